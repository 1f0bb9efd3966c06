"""Train a small neural network on scikit-learn's digits (8x8 handwritten digits, shipped with the package).

Record it into MongoDB with sacred-gpu's observer, attached from the command line:

    python examples/train_digits.py -g localhost:27017:sacred
    python examples/train_digits.py -g localhost:27017:sacred with epochs=50 learning_rate=0.003

Logs ``train_loss``, ``val_loss`` and ``val_acc`` every epoch, prints progress, and saves the trained model as a
``model.pkl`` artifact (a pickled scikit-learn ``MLPClassifier``). A run whose training loss exceeds ``max_loss`` or
is not finite stops with :class:`TrainingDiverged` (a learning rate far too high does that in the first epoch).
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile

import numpy as np
from sacred import Experiment
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from sacred_gpu import gpu_mongo_option

ex = Experiment("train_digits", additional_cli_options=[gpu_mongo_option])


@ex.config
def config():
    hidden_units = [64, 32]  # sizes of the hidden layers
    learning_rate = 0.001  # Adam step size
    batch_size = 64
    epochs = 30
    val_fraction = 0.25
    checkpoint_every = 10  # epochs between checkpoint artifacts (0: only the final model)
    max_loss = 10.0  # stop with an error when the training loss exceeds this or is not finite (divergence)


@ex.main
def train(_run, _seed, hidden_units, learning_rate, batch_size, epochs, val_fraction, checkpoint_every,
          max_loss):
    digits = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(
        digits.data, digits.target, test_size=val_fraction, random_state=_seed, stratify=digits.target
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)
    classes = np.unique(digits.target)
    model = MLPClassifier(
        hidden_layer_sizes=tuple(hidden_units), learning_rate_init=learning_rate, random_state=_seed
    )  # partial_fit below trains on each mini-batch it is given
    rng = np.random.default_rng(_seed)
    print(f"training on {len(x_train)} digits, validating on {len(x_val)}")
    val_acc = 0.0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        batch_losses = []
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            model.partial_fit(x_train[batch], y_train[batch], classes=classes)
            batch_losses.append(model.loss_)
        train_loss = float(np.mean(batch_losses))
        probabilities = model.predict_proba(x_val)
        val_loss = log_loss(y_val, probabilities, labels=classes)
        val_acc = accuracy_score(y_val, classes[probabilities.argmax(axis=1)])
        _run.log_scalar("train_loss", train_loss, epoch)
        _run.log_scalar("val_loss", float(val_loss), epoch)
        _run.log_scalar("val_acc", float(val_acc), epoch)
        print(f"epoch {epoch:3d}/{epochs}  train_loss {train_loss:.4f}  val_loss {val_loss:.4f}  val_acc {val_acc:.4f}")
        check_divergence(train_loss, max_loss, epoch)
        if epoch == epochs or (checkpoint_every and epoch % checkpoint_every == 0):
            save_checkpoint(_run, {"model": model, "scaler": scaler, "epoch": epoch})
    return float(val_acc)


class TrainingDiverged(RuntimeError):
    """The training loss blew up: continuing would only waste the machine."""


def check_divergence(train_loss: float, max_loss: float | None, epoch: int) -> None:
    """Raise :class:`TrainingDiverged` if ``train_loss`` is not finite or above ``max_loss`` (None: no limit)."""
    if not math.isfinite(train_loss) or (max_loss is not None and train_loss > max_loss):
        problem = "is not finite" if not math.isfinite(train_loss) else f"exceeds max_loss {max_loss}"
        raise TrainingDiverged(f"train_loss {train_loss:.4g} at epoch {epoch} {problem}: the training diverged "
                               f"(learning rate too high?)")


def save_checkpoint(run, checkpoint: dict) -> None:
    """Pickle the model and scaler and add them to the run as the artifact ``model.pkl``."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.pkl")
        with open(path, "wb") as handle:
            pickle.dump(checkpoint, handle)
        run.add_artifact(path, "model.pkl", metadata={"epoch": checkpoint["epoch"]},
                         content_type="application/octet-stream")


if __name__ == "__main__":
    ex.run_commandline()
