"""Linear probe: how linearly separable the classes are in a frozen embedding space.

A multinomial logistic regression (softmax + cross-entropy, L2 weight decay on the weights, bias
not decayed) is fitted full-batch with L-BFGS in float64, starting from zeros. The problem is
convex, there is no sampling and no random initialisation, so the same embeddings give the same
probe: a probe score that moved between runs of the same model would be noise, not signal.

Weight decay: when a validation split is given, every value of ``weight_decays`` is fitted on the
training split and the one with the best validation accuracy is kept (ties: the larger decay, the
simpler model); the reported model is that fit on the training split alone, so the train
accuracy is what it says. Without a validation split ``weight_decay`` is used as given.

torch is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from training.metrics import per_class_accuracy

DEFAULT_WEIGHT_DECAY = 1e-4
WEIGHT_DECAY_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@dataclass(frozen=True)
class LinearProbe:
    weights: np.ndarray  # (D, K) float64
    bias: np.ndarray  # (K,) float64
    weight_decay: float
    final_loss: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.weights + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class index per row; ties go to the lower class index (``argmax``)."""
        return np.argmax(self.logits(x), axis=1)


@dataclass
class ProbeResult:
    train_accuracy: float
    test_accuracy: float
    per_class_accuracy: dict[int, float]  # test split, classes with test examples
    mean_per_class_accuracy: float
    weight_decay: float
    num_classes: int
    num_train: int
    num_test: int
    validation_accuracy: dict[float, float] = field(default_factory=dict)  # weight decay -> accuracy

    def to_dict(self) -> dict:
        return {
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "per_class_accuracy": dict(self.per_class_accuracy),
            "mean_per_class_accuracy": self.mean_per_class_accuracy,
            "weight_decay": self.weight_decay,
            "num_classes": self.num_classes,
            "num_train": self.num_train,
            "num_test": self.num_test,
            "validation_accuracy": {repr(k): v for k, v in self.validation_accuracy.items()},
        }


def _check(x: np.ndarray, y: np.ndarray, num_classes: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"{name}: need x (N, D) and y (N,), got {x.shape} and {y.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: no examples")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{name}: labels must be integers in [0, {num_classes})")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: embeddings contain NaN or Inf")
    return x, y.astype(np.int64)


def fit_linear_probe(
    x: np.ndarray, y: np.ndarray, num_classes: int, *, weight_decay: float = DEFAULT_WEIGHT_DECAY, max_iter: int = 500
) -> LinearProbe:
    """Minimise ``mean cross-entropy + weight_decay * ||W||^2`` over (W, b) with L-BFGS."""
    import torch
    import torch.nn.functional as F

    x, y = _check(x, y, num_classes, "train")
    if weight_decay < 0:
        raise ValueError("weight_decay must be >= 0")
    features = torch.from_numpy(x)
    targets = torch.from_numpy(y)
    weights = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weights, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weights + bias, targets) + weight_decay * weights.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
        final = float(objective().detach())
    return LinearProbe(weights.detach().numpy().copy(), bias.detach().numpy().copy(), float(weight_decay), final)


def _accuracy(probe: LinearProbe, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(probe.predict(x) == y))


def run_linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    num_classes: int | None = None,
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    weight_decays: Sequence[float] = WEIGHT_DECAY_GRID,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    max_iter: int = 500,
) -> ProbeResult:
    """Fit on train (choosing the weight decay on val when given) and score train and test."""
    if num_classes is None:
        num_classes = int(max(np.max(train_y), np.max(test_y))) + 1
    train_x, train_y = _check(train_x, train_y, num_classes, "train")
    test_x, test_y = _check(test_x, test_y, num_classes, "test")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test dimensions differ: {train_x.shape[1]} vs {test_x.shape[1]}")
    validation: dict[float, float] = {}
    if val_x is not None and val_y is not None:
        val_x, val_y = _check(val_x, val_y, num_classes, "val")
        if not weight_decays:
            raise ValueError("weight_decays is empty")
        fits = {}
        for decay in sorted(set(float(d) for d in weight_decays)):
            fits[decay] = fit_linear_probe(train_x, train_y, num_classes, weight_decay=decay, max_iter=max_iter)
            validation[decay] = _accuracy(fits[decay], val_x, val_y)
        best = max(validation, key=lambda d: (validation[d], d))
        probe = fits[best]
    else:
        probe = fit_linear_probe(train_x, train_y, num_classes, weight_decay=weight_decay, max_iter=max_iter)
    predicted = probe.predict(test_x)
    per_class = per_class_accuracy(predicted, test_y, num_classes)
    return ProbeResult(
        train_accuracy=_accuracy(probe, train_x, train_y),
        test_accuracy=float(np.mean(predicted == test_y)),
        per_class_accuracy=per_class,
        mean_per_class_accuracy=float(np.mean(list(per_class.values()))),
        weight_decay=probe.weight_decay,
        num_classes=num_classes,
        num_train=int(train_x.shape[0]),
        num_test=int(test_x.shape[0]),
        validation_accuracy=validation,
    )
