"""Losses: VGG perceptual loss and the poster's `alpha * MSE + beta * perceptual`.

Reference: Johnson et al., "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution", ECCV 2016; the poster used 100 * MSE + the sum of VGG feature MSEs.
"""

import keras
from keras import ops

_PACKAGE = "keras_resunet"

BACKBONES = {
    "vgg19": (
        keras.applications.VGG19,
        ("block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4"),
    ),
    "vgg16": (
        keras.applications.VGG16,
        ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"),
    ),
}
# ImageNet channel means in BGR order on the 0-255 scale: what keras' vgg preprocess_input
# ("caffe" mode) subtracts after flipping RGB to BGR.
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def vgg_preprocess(images):
    """RGB (or gray) in [0, 1] -> VGG's expected input: BGR, 0-255, ImageNet mean removed."""
    if images.shape[-1] == 1:
        images = ops.repeat(images, 3, axis=-1)
    bgr = images[..., ::-1] * 255.0
    return bgr - ops.convert_to_tensor(_IMAGENET_BGR_MEAN, dtype=bgr.dtype)


def build_feature_extractor(backbone="vgg19", layers=None, weights=None):
    """A frozen VGG model mapping [0, 1] images to the listed feature maps.

    Args:
        backbone: "vgg19" or "vgg16".
        layers: layer names (default: the last conv of each block).
        weights: None (random init: tests only), "imagenet" (downloads through Keras on first
            use), or a path to a weights file for the `include_top=False` network.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}. Valid: {sorted(BACKBONES)}")
    constructor, default_layers = BACKBONES[backbone]
    layers = tuple(layers or default_layers)
    source = weights if weights in (None, "imagenet") else None
    network = constructor(include_top=False, weights=source, input_shape=(None, None, 3))
    if weights not in (None, "imagenet"):
        network.load_weights(weights)
    names = [layer.name for layer in network.layers]
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise ValueError(f"Unknown {backbone} layers {unknown}. Valid: {names[1:]}")
    network.trainable = False
    outputs = [network.get_layer(name).output for name in layers]
    return keras.Model(network.input, outputs, name=f"{backbone}_features")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PerceptualLoss(keras.losses.Loss):
    """Weighted sum over VGG layers of the MSE between feature maps of prediction and target.

    Inputs are RGB or gray images in [0, 1]; gray is repeated to 3 channels.

    Args:
        layer_weights: dict layer name -> weight (default: last conv of each block, weight 1).
        backbone: "vgg19" (default) or "vgg16".
        weights: None, "imagenet" or a weights file path. Always explicit: None never pretends
            to be ImageNet.
    """

    def __init__(
        self, layer_weights=None, backbone="vgg19", weights=None, name="perceptual", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        if backbone not in BACKBONES:
            raise ValueError(f"Unknown backbone {backbone!r}. Valid: {sorted(BACKBONES)}")
        if layer_weights is None:
            layer_weights = {layer: 1.0 for layer in BACKBONES[backbone][1]}
        self.layer_weights = {str(k): float(v) for k, v in layer_weights.items()}
        self.backbone = backbone
        self.weights = weights
        self.extractor = build_feature_extractor(backbone, tuple(self.layer_weights), weights)

    def call(self, y_true, y_pred):
        true_features = self.extractor(vgg_preprocess(y_true))
        pred_features = self.extractor(vgg_preprocess(y_pred))
        total = 0.0
        for weight, true, pred in zip(self.layer_weights.values(), true_features, pred_features):
            total = total + weight * ops.mean(ops.square(pred - true), axis=(1, 2, 3))
        return total

    def get_config(self):
        return {
            **super().get_config(),
            "layer_weights": self.layer_weights,
            "backbone": self.backbone,
            "weights": self.weights,
        }


PIXEL_LOSSES = ("mse", "l1", "psnr")
# The "psnr" loss's cap: an image restored better than this counts as this (keeps the gradient
# of nearly noise-free inputs, whose error is tiny, from dominating a batch).
PSNR_LOSS_CAP_DB = 40.0


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RestorationLoss(keras.losses.Loss):
    """`alpha * pixel + beta * perceptual`; beta = 0 means the pixel loss alone (no VGG is built).

    Args:
        alpha: float, pixel-loss weight (the poster: 100 with the perceptual term, 1 without).
        beta: float, perceptual weight.
        perceptual: dict of `PerceptualLoss` arguments (layer_weights, backbone, weights).
        pixel: "mse" (the poster's), "l1" (mean absolute error: its gradient does not grow
            with the error, so strongly degraded images do not dominate a mixed batch) or "psnr"
            (minus each image's PSNR in dB, softly capped at `PSNR_LOSS_CAP_DB`: a batch mixing
            noise levels weighs a dB gained at a low level like one at a high level, where
            MSE weighs it by the level's squared error).
    """

    def __init__(
        self, alpha=1.0, beta=0.0, perceptual=None, pixel="mse", name="restoration", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        if pixel not in PIXEL_LOSSES:
            raise ValueError(f"Unknown pixel loss {pixel!r}. Valid: {list(PIXEL_LOSSES)}")
        self.pixel = pixel
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.perceptual_config = dict(perceptual or {})
        self.perceptual = PerceptualLoss(**self.perceptual_config) if self.beta else None

    def terms(self, y_true, y_pred):
        """Per-image loss terms {"mse", "l1" or "psnr": ..., "perceptual": ...} before weighting."""
        # in float32 whatever the model computed in (a mixed-precision output is 16-bit)
        y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
        error = y_pred - y_true
        if self.pixel == "l1":
            pixel = ops.mean(ops.abs(error), axis=(1, 2, 3))
        else:
            pixel = ops.mean(ops.square(error), axis=(1, 2, 3))
        if self.pixel == "psnr":  # -PSNR on the [0, 1] scale
            pixel = 10.0 * ops.log(pixel + 10.0 ** (-PSNR_LOSS_CAP_DB / 10.0)) / ops.log(10.0)
        terms = {self.pixel: pixel}
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual.call(y_true, y_pred)
        return terms

    def call(self, y_true, y_pred):
        terms = self.terms(y_true, y_pred)
        total = self.alpha * terms[self.pixel]
        if self.perceptual is not None:
            total = total + self.beta * terms["perceptual"]
        return total

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "beta": self.beta,
            "perceptual": self.perceptual_config,
            "pixel": self.pixel,
        }
