"""Tabular data under feature constraints: schema, CSV loading, constrained attacks, audit.

    schema = FeatureSchema.from_yaml("schema.yaml")
    data = load_csv("rows.csv", schema)                 # x, y, schema (checked, calibrated)
    result = ConstrainedAPGD(schema)(model, data.x, data.y, ThreatModel(norm="linf", eps=0.3))
    report = tabular_audit(model, data.x, data.y, schema, eps=0.3)
"""

from rampart.tabular.audit import AttackPair, default_pair, tabular_audit
from rampart.tabular.base import SchemaAttack
from rampart.tabular.csv_data import TabularData, load_csv
from rampart.tabular.errors import (
    ExpressionSyntaxError,
    SchemaDataError,
    SchemaError,
    UnknownFeatureError,
)
from rampart.tabular.expressions import parse_relation
from rampart.tabular.gradient import ConstrainedAPGD, ConstrainedGradientAttack, ConstrainedPGD
from rampart.tabular.model import TabularMLP, tabular_classifier, train_mlp
from rampart.tabular.region import BudgetRegion, ConstrainedRegion, violations
from rampart.tabular.relations import Relation, compile_relation
from rampart.tabular.report import TabularAuditReport
from rampart.tabular.schema import FeatureSchema, load_schema
from rampart.tabular.search import ConstrainedSearch

__all__ = [
    "AttackPair", "BudgetRegion", "ConstrainedAPGD", "ConstrainedGradientAttack",
    "ConstrainedPGD", "ConstrainedRegion", "ConstrainedSearch", "ExpressionSyntaxError",
    "FeatureSchema", "Relation", "SchemaAttack", "SchemaDataError", "SchemaError",
    "TabularAuditReport", "TabularData", "TabularMLP", "UnknownFeatureError",
    "compile_relation", "default_pair", "load_csv", "load_schema", "parse_relation",
    "tabular_audit", "tabular_classifier", "train_mlp", "violations",
]
