"""The one trainer every model and experiment uses.

- `config`: `TrainConfig`, everything a run depends on, checked before any work;
- `trainer`: `train`, Keras `fit` under a `tf.distribute` strategy (or on the JAX / PyTorch
  backends), in chunks of `checkpoint_every` steps;
- `callbacks`: checkpoints with progress, image summaries;
- `checkpoints`: `.keras` checkpoints for the non-TensorFlow backends, warm starts;
- `run_folder`: the run's lock, progress, config check and provenance;
- `multi_worker`: the distributed step for MultiWorkerMirroredStrategy.
"""

from keras_resunet.training.checkpoints import warm_start
from keras_resunet.training.config import TrainConfig
from keras_resunet.training.run_folder import TrainingError, final_loss, read_progress
from keras_resunet.training.trainer import make_strategy, train

__all__ = [
    "TrainConfig",
    "TrainingError",
    "final_loss",
    "make_strategy",
    "read_progress",
    "train",
    "warm_start",
]
