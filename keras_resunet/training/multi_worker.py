"""Training under MultiWorkerMirroredStrategy, which Keras 3's `fit` does not run."""

import keras
import numpy as np
import tensorflow as tf

from keras_resunet.metrics import psnr_metric


def fit_multi_worker(
    model, dataset, strategy, steps_per_chunk, first_chunk, chunks, callbacks, config
):
    """`fit` for MultiWorkerMirroredStrategy, which Keras 3's own `fit` does not run (it fails
    converting a PerReplica batch: keras-team/keras#20585, open for TF 2.16 to 2.21).

    The same compiled model, optimizer, loss and callbacks, driven by a small distributed step:
    each replica computes its per-patch losses, scales them once by the global batch
    (`tf.nn.compute_average_loss`), and the optimizer all-reduces the gradients across workers.
    """
    callback_list = keras.callbacks.CallbackList(callbacks, model=model)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    loss_function = model.loss

    def replica_step(batch):
        degraded, clean = batch
        with tf.GradientTape() as tape:
            restored = model(degraded, training=True)
            per_patch = loss_function.call(clean, restored)
            loss = tf.nn.compute_average_loss(per_patch, global_batch_size=config.batch_size)
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        psnr = tf.nn.compute_average_loss(
            psnr_metric(clean, restored), global_batch_size=config.batch_size
        )
        return loss, psnr

    @tf.function
    def train_step(iterator):
        loss, psnr = strategy.run(replica_step, args=(next(iterator),))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", psnr, axis=None)

    callback_list.on_train_begin()
    for chunk in range(first_chunk, chunks):
        callback_list.on_epoch_begin(chunk)
        losses, psnrs = [], []
        for step in range(steps_per_chunk):
            loss, psnr = train_step(iterator)
            losses.append(float(loss))
            psnrs.append(float(psnr))
            callback_list.on_train_batch_end(step, {"loss": losses[-1]})
            if model.stop_training:
                break
        callback_list.on_epoch_end(
            chunk, {"loss": float(np.mean(losses)), "psnr_metric": float(np.mean(psnrs))}
        )
        if model.stop_training:
            break
    callback_list.on_train_end()
