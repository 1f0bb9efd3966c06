"""Fit a small neural network regressor to scikit-learn's diabetes data (442 patients, 10 measurements each; the
target is a disease progression score one year later), shipped with the package.

Record it into MongoDB with sacred-gpu's observer, attached from the command line:

    python examples/train_diabetes.py -g localhost:27017:sacred
    python examples/train_diabetes.py -g localhost:27017:sacred with alpha=0.001 epochs=500

Logs ``train_rmse``, ``val_rmse``, ``val_mae`` and ``val_r2`` every epoch, prints progress, returns the last
``val_r2`` and saves the trained model as a ``model.pkl`` artifact (a pickled scikit-learn ``MLPRegressor`` with
the scalers of its inputs and target).
"""

from __future__ import annotations

import os
import pickle
import tempfile

import numpy as np
from sacred import Experiment
from sklearn.datasets import load_diabetes
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler

from sacred_gpu import gpu_mongo_option

ex = Experiment("train_diabetes", additional_cli_options=[gpu_mongo_option])


@ex.config
def config():
    hidden_units = [32, 16]  # sizes of the hidden layers
    learning_rate = 0.001  # Adam step size
    alpha = 1.0  # L2 penalty (scikit-learn's, scaled by the batch size)
    batch_size = 32
    epochs = 300
    val_fraction = 0.25


@ex.main
def train(_run, _seed, hidden_units, learning_rate, alpha, batch_size, epochs, val_fraction):
    data = load_diabetes()
    x_train, x_val, y_train, y_val = train_test_split(data.data, data.target, test_size=val_fraction,
                                                      random_state=_seed)
    x_scaler = StandardScaler().fit(x_train)
    x_train, x_val = x_scaler.transform(x_train), x_scaler.transform(x_val)
    y_mean, y_std = float(y_train.mean()), float(y_train.std())  # the network learns the standardised target
    model = MLPRegressor(hidden_layer_sizes=tuple(hidden_units), learning_rate_init=learning_rate, alpha=alpha,
                         random_state=_seed)
    rng = np.random.default_rng(_seed)
    print(f"training on {len(x_train)} patients, validating on {len(x_val)}")
    val_r2 = 0.0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            model.partial_fit(x_train[batch], (y_train[batch] - y_mean) / y_std)
        train_rmse = float(np.sqrt(mean_squared_error(y_train, model.predict(x_train) * y_std + y_mean)))
        predicted = model.predict(x_val) * y_std + y_mean
        val_rmse = float(np.sqrt(mean_squared_error(y_val, predicted)))
        val_mae = float(mean_absolute_error(y_val, predicted))
        val_r2 = float(r2_score(y_val, predicted))
        _run.log_scalar("train_rmse", train_rmse, epoch)
        _run.log_scalar("val_rmse", val_rmse, epoch)
        _run.log_scalar("val_mae", val_mae, epoch)
        _run.log_scalar("val_r2", val_r2, epoch)
        if epoch == epochs or epoch % 25 == 0:
            print(f"epoch {epoch:4d}/{epochs}  train_rmse {train_rmse:.2f}  val_rmse {val_rmse:.2f}  "
                  f"val_r2 {val_r2:.4f}")
    save_model(_run, {"model": model, "x_scaler": x_scaler, "y_mean": y_mean, "y_std": y_std})
    return val_r2


def save_model(run, fitted: dict) -> None:
    """Pickle the model with its scalers and add it to the run as the artifact ``model.pkl``."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.pkl")
        with open(path, "wb") as handle:
            pickle.dump(fitted, handle)
        run.add_artifact(path, "model.pkl", content_type="application/octet-stream")


if __name__ == "__main__":
    ex.run_commandline()
