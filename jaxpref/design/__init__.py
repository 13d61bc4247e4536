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
    DETERMINISTIC,
    METHODS,
    ActiveResult,
    adpo,
    adpo_plus,
    apo,
    certainty,
    design_vectors,
    prefix_fits,
    select,
    uniform,
    uses_key,
)

__all__ += [
    "DETERMINISTIC",
    "METHODS",
    "ActiveResult",
    "adpo",
    "adpo_plus",
    "apo",
    "certainty",
    "design_vectors",
    "prefix_fits",
    "select",
    "uniform",
    "uses_key",
]
from jaxpref.design.gradient_uncertainty import (  # noqa: E402
    NORMALIZATIONS,
    GradientDesignState,
    GradientSelection,
    gradient_design_init,
    gradient_design_update,
    gradient_uncertainty_batch,
    pair_features,
)
from jaxpref.design.sketch import (  # noqa: E402
    projected_inner_product_variance,
    projection_matrix,
    random_projection,
)

__all__ += [
    "NORMALIZATIONS",
    "GradientDesignState",
    "GradientSelection",
    "gradient_design_init",
    "gradient_design_update",
    "gradient_uncertainty_batch",
    "pair_features",
    "projected_inner_product_variance",
    "projection_matrix",
    "random_projection",
]
from jaxpref.design.greedy import GREEDY_METHODS  # noqa: E402
from jaxpref.design.lazy import LazyStats, lazy_greedy_doptimal  # noqa: E402

__all__ += ["GREEDY_METHODS", "LazyStats", "lazy_greedy_doptimal"]
from jaxpref.design.curves import (  # noqa: E402
    BudgetCurve,
    MethodCurves,
    budget_curve,
    compare_methods,
)

__all__ += ["BudgetCurve", "MethodCurves", "budget_curve", "compare_methods"]
from jaxpref.design.reference import (  # noqa: E402
    brute_force_greedy_logdet,
    direct_uncertainty_scores,
    gradient_selection_check,
)

__all__ += ["brute_force_greedy_logdet", "direct_uncertainty_scores", "gradient_selection_check"]
