"""Training: the compiled step and epoch (:mod:`.step`), the epoch loop and its pieces
(:mod:`.loop`), ``fit`` and ``evaluate`` (:mod:`.fit`), per-example gradients
(:mod:`.per_example`). Re-exports only."""

from fnmlp.train.fit import (
    FitResult,
    check_resumed_state,
    evaluate,
    fit,
)
from fnmlp.train.loop import (
    EpochLog,
    Patience,
    TrainingDiverged,
    epoch_record,
    format_record,
    run_epochs,
    track_best,
    train_epoch,
    validate,
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

__all__ = ["DROPOUT_STREAM", "PER_EXAMPLE_WORK", "Batch", "EarlyStopping", "EpochLog",
           "FitResult", "Patience", "Trainer", "TrainState", "TrainingDiverged",
           "cached_trainer", "check_resumed_state", "copy_tree", "dropout_key", "epoch_fn",
           "epoch_record", "eval_fn", "evaluate", "fit", "format_record", "fresh_state",
           "init_state", "jitted_eval", "make_train_step", "make_trainer",
           "per_example_grads", "per_example_memory", "run_epochs", "track_best",
           "train_epoch", "validate", "weight_matrices", "weight_stats"]
