"""rolecall: role-aware, real-time session personalization.

This package holds what both wings share: typed config, role derivation,
the two towers, item features, the scoring rule and the bundle format.
The offline wing lives in `train`, the online wing in `serve`.
"""

__version__ = "0.1.0"
