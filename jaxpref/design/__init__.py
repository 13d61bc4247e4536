"""Active selection of preference pairs: greedy D-optimal design, ADPO/ADPO+ and baselines."""

from jaxpref.design.greedy import (
    DOptimalResult,
    DOptimalState,
    doptimal_add,
    doptimal_init,
    doptimal_update,
    greedy_doptimal,
    greedy_doptimal_batch,
)

__all__ = [
    "DOptimalResult",
    "DOptimalState",
    "doptimal_add",
    "doptimal_init",
    "doptimal_update",
    "greedy_doptimal",
    "greedy_doptimal_batch",
]
from jaxpref.design.active import (  # noqa: E402
    ActiveResult,
    adpo,
    adpo_plus,
    apo,
    certainty,
    design_vectors,
    uniform,
)

__all__ += ["ActiveResult", "adpo", "adpo_plus", "apo", "certainty", "design_vectors", "uniform"]
