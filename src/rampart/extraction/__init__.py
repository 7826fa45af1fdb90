"""Model extraction (stealing) and its defences: Knockoff-style thieves with a query budget,
output-side defences an API can apply to its answers, and a PRADA-style query monitor."""

from rampart.extraction.defended import defend
from rampart.extraction.knockoff import KnockoffNets, query_schedule
from rampart.extraction.output_defences import (
    OutputDefence,
    labels_only,
    noisy_probabilities,
    round_probabilities,
    top_k,
)
from rampart.extraction.pool import drop_overlap, load_pool, noise_pool
from rampart.extraction.prada import ClientStatus, PradaMonitor
from rampart.extraction.result import CurvePoint, ExtractionResult, ExtractionRun
from rampart.extraction.selection import AdaptiveQueries, RandomQueries
from rampart.extraction.steal import steal

__all__ = ["AdaptiveQueries", "ClientStatus", "CurvePoint", "ExtractionResult", "ExtractionRun",
           "KnockoffNets", "OutputDefence", "PradaMonitor", "RandomQueries", "defend",
           "drop_overlap", "labels_only", "load_pool", "noise_pool", "noisy_probabilities",
           "query_schedule", "round_probabilities", "steal", "top_k"]
