"""jaxmlp: the Keras MNIST example (784 -> 512 relu -> 10 softmax, RMSProp) in functional JAX."""

from jaxmlp import checkpoint, files, hyperparams, loop, optim, parallel, population, regularize, schedules
from jaxmlp.checkpoint import load_pytree, save_pytree
from jaxmlp.data import load_dataset, load_mnist, to_categorical
from jaxmlp.loop import Diverged, History
from jaxmlp.model import accuracy, apply, count_params, cross_entropy, init_mlp, loss, summary
from jaxmlp.optim import (
    GradientTransformation,
    adagrad,
    adam,
    adamw,
    apply_updates,
    chain,
    clip_by_global_norm,
    lion,
    muon,
    nadam,
    nadamw,
    rmsprop,
    schedule_free_adamw,
    sgd,
)
from jaxmlp.plot import plot_history
from jaxmlp.train import (
    TrainState,
    evaluate,
    evaluation_params,
    fit,
    predict,
    predict_classes,
    train_epoch,
    train_step,
)

__version__ = "0.1.0"

__all__ = [
    "Diverged",
    "GradientTransformation",
    "History",
    "TrainState",
    "accuracy",
    "adagrad",
    "adam",
    "adamw",
    "apply",
    "apply_updates",
    "chain",
    "checkpoint",
    "clip_by_global_norm",
    "count_params",
    "cross_entropy",
    "evaluate",
    "evaluation_params",
    "files",
    "fit",
    "hyperparams",
    "init_mlp",
    "lion",
    "load_dataset",
    "load_mnist",
    "load_pytree",
    "loop",
    "loss",
    "muon",
    "nadam",
    "nadamw",
    "optim",
    "parallel",
    "plot_history",
    "population",
    "predict",
    "predict_classes",
    "regularize",
    "rmsprop",
    "save_pytree",
    "schedule_free_adamw",
    "schedules",
    "sgd",
    "summary",
    "to_categorical",
    "train_epoch",
    "train_step",
]
