"""Black-box targets: models rampart can only query (callables, scikit-learn, ONNX, HTTP).

Every target is a ``BlackBoxClassifier``; ``open_blackbox(TargetSpec(...))`` builds one from
command-line style options. httpx and onnxruntime are imported only when such a target is
opened.
"""

from rampart.blackbox.callable_target import TorchCallable, as_query_fn
from rampart.blackbox.classifier import BlackBoxClassifier
from rampart.blackbox.http_config import HttpConfig, load_http_config
from rampart.blackbox.http_target import HttpQuery, from_http
from rampart.blackbox.onnx_target import from_onnx
from rampart.blackbox.querylog import QueryLog
from rampart.blackbox.sklearn_target import from_sklearn
from rampart.blackbox.spec import TargetSpec, open_blackbox

__all__ = ["BlackBoxClassifier", "HttpConfig", "HttpQuery", "QueryLog", "TargetSpec",
           "TorchCallable", "as_query_fn", "from_http", "from_onnx", "from_sklearn",
           "load_http_config", "open_blackbox"]
