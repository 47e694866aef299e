"""Training: the compiled step and epoch (:mod:`.step`), ``fit`` and ``evaluate``
(:mod:`.fit`), per-example gradients (:mod:`.per_example`). Re-exports only."""

from fnmlp.train.fit import (
    FitResult,
    TrainingDiverged,
    check_resumed_state,
    epoch_record,
    evaluate,
    fit,
    format_record,
    run_epochs,
)
from fnmlp.train.per_example import PER_EXAMPLE_WORK, per_example_grads, per_example_memory
from fnmlp.train.step import (
    DROPOUT_STREAM,
    Batch,
    EarlyStopping,
    Trainer,
    TrainState,
    cached_trainer,
    copy_tree,
    dropout_key,
    epoch_fn,
    eval_fn,
    fresh_state,
    init_state,
    jitted_eval,
    make_train_step,
    make_trainer,
    weight_matrices,
    weight_stats,
)

__all__ = ["DROPOUT_STREAM", "PER_EXAMPLE_WORK", "Batch", "EarlyStopping", "FitResult",
           "Trainer", "TrainState", "TrainingDiverged", "cached_trainer",
           "check_resumed_state", "copy_tree",
           "dropout_key", "epoch_fn", "epoch_record", "eval_fn", "evaluate", "fit",
           "format_record", "fresh_state", "init_state", "jitted_eval", "make_train_step",
           "make_trainer", "per_example_grads", "per_example_memory", "run_epochs",
           "weight_matrices", "weight_stats"]
