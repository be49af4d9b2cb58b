"""The MLP: one hidden layer (tanh), softmax output, trained by mini-batch gradient descent.

Its parameters are the four arrays a federation exchanges, ``[W1, b1, W2, b2]``. Everything
is numpy and deterministic for a given seed, so two runs of the federation agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

Arrays = list[np.ndarray]


def initial_parameters(n_features: int, n_hidden: int, n_classes: int, seed: int) -> Arrays:
    """Glorot-uniform weights and zero biases, drawn from ``seed``."""
    rng = np.random.default_rng(seed)

    def glorot(fan_in: int, fan_out: int) -> np.ndarray:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=(fan_in, fan_out))

    return [glorot(n_features, n_hidden), np.zeros(n_hidden),
            glorot(n_hidden, n_classes), np.zeros(n_classes)]


def forward(params: Arrays, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hidden activations and the class probabilities of ``X``."""
    W1, b1, W2, b2 = params
    hidden = np.tanh(X @ W1 + b1)
    logits = hidden @ W2 + b2
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return hidden, exp / exp.sum(axis=1, keepdims=True)


def loss_and_accuracy(params: Arrays, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on ``(X, y)``."""
    _, proba = forward(params, X)
    loss = -np.mean(np.log(proba[np.arange(len(y)), y] + 1e-12))
    return float(loss), float(np.mean(proba.argmax(axis=1) == y))


def train(params: Arrays, X: np.ndarray, y: np.ndarray, *, epochs: int, learning_rate: float,
          batch_size: int, seed: int) -> Arrays:
    """Mini-batch gradient descent on the cross-entropy; returns new arrays."""
    W1, b1, W2, b2 = (p.copy() for p in params)
    rng = np.random.default_rng(seed)
    n_classes = W2.shape[1]
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            batch = order[start:start + batch_size]
            xb, yb = X[batch], y[batch]
            hidden, proba = forward([W1, b1, W2, b2], xb)
            grad_logits = (proba - np.eye(n_classes)[yb]) / len(yb)
            grad_hidden = (grad_logits @ W2.T) * (1.0 - hidden ** 2)
            W2 -= learning_rate * hidden.T @ grad_logits
            b2 -= learning_rate * grad_logits.sum(axis=0)
            W1 -= learning_rate * xb.T @ grad_hidden
            b1 -= learning_rate * grad_hidden.sum(axis=0)
    return [W1, b1, W2, b2]


def load_split(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``X`` and ``y`` from an ``.npz`` file."""
    with np.load(path) as data:
        return np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"], dtype=np.int64)
