"""Plots for the scripts: decision boundary, loss curves, regression fit (matplotlib).

matplotlib is an optional extra (``pip install 'fnmlp[plot]'``); it is imported when a
plot is made, with the non-interactive Agg backend.
"""

from fnmlp.plot.curves import (
    compare_curves,
    confusion_heatmap,
    ensemble_bars,
    gradient_norms,
    learning_curves,
    loss_curve,
    population_curves,
    prediction_grid,
    regression_fit,
    weight_images,
    weight_norms,
)
from fnmlp.plot.plane import decision_boundaries, decision_boundary, hidden_units, scatter_classes

__all__ = ["compare_curves", "confusion_heatmap", "decision_boundaries", "decision_boundary",
           "ensemble_bars", "gradient_norms", "hidden_units", "learning_curves", "loss_curve",
           "population_curves", "prediction_grid", "regression_fit", "scatter_classes",
           "weight_images", "weight_norms"]
