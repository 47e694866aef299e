"""Files: checkpoints (:mod:`.checkpoint`), saved models (:mod:`.model_file`, a config of
``{model, loss, input}``), checkpoints of the earlier formats (:mod:`.legacy`), the one
atomic writer (:mod:`.atomic`). Re-exports only."""

from fnmlp.io.atomic import write_atomic, write_text_atomic
from fnmlp.io.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from fnmlp.io.model_file import SavedModel, architecture, load_model, model_config, saved_config

__all__ = ["SavedModel", "architecture", "load_checkpoint", "load_model", "model_config",
           "read_checkpoint_meta", "save_checkpoint", "saved_config", "write_atomic",
           "write_text_atomic"]
