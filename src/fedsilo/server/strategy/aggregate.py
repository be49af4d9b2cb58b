"""Aggregation rules as pure functions: arrays in, arrays out, no I/O."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from fedsilo.common.clipping import clip_update, l2_norm
from fedsilo.common.parameter import parameters_to_ndarrays
from fedsilo.common.typing import FitRes, NDArray, NDArrays

if TYPE_CHECKING:
    from fedsilo.server.client_proxy import ClientProxy

__all__ = [
    "adaptive_clip_norm_step",
    "adaptive_noise_split",
    "add_gaussian_noise",
    "add_weighted",
    "add_weighted_many",
    "aggregate",
    "aggregate_bulyan",
    "aggregate_inplace",
    "aggregate_krum",
    "aggregate_median",
    "aggregate_qffl",
    "aggregate_trimmed_avg",
    "aggregate_trimmed_mean",
    "aggregate_weighted_mean",
    "aggregate_xgb_bagging",
    "clip_update",
    "fedadagrad_step",
    "fedadam_step",
    "fedavgm_step",
    "fedyogi_step",
    "gaussian_noise_stddev",
    "krum_scores",
    "l2_norm",
    "mean_closest_to_median",
    "pairwise_squared_distances",
    "qffl_client_step",
    "start_weighted",
    "weighted_loss_avg",
    "weighted_mean_from_sums",
]


def aggregate(results: list[tuple[NDArrays, int]]) -> NDArrays:
    """Example-weighted mean of each layer: sum_k n_k w_k / sum_k n_k (FedAvg).

    Flower's name; :data:`aggregate_weighted_mean` is the same function. ``results`` holds
    each client's layers and its number of examples. Returns each layer in its input dtype
    (float64 for integer layers).

    Layers that are float32 in every result are summed in float32, the raw example counts
    as weights, then divided once by the total, as Flower computes the mean: where Flower's
    result is exact (small integer values and counts) this one is the same. The sum is one
    matrix-vector product (BLAS) per cache-sized block, so the updates are read once and no
    model-sized float64 state is kept; it stays within float32 rounding of the exact mean
    (at most about ``len(results)`` float32 units relative to ``sum_k n_k |w_k| / sum_k
    n_k``). Counts above 2**24, which float32 cannot hold exactly, are used normalized
    (``n_k / total``) instead. Other layers are summed in float64.
    """
    if not results:
        raise ValueError("aggregate needs at least one (layers, num_examples) result")
    _check_like(results[0][0], [layers for layers, _ in results])
    counts = [int(n) for _, n in results]
    total = sum(counts)
    _check_total(total)
    if max(counts) <= _FLOAT32_EXACT_INT:
        weights, divisor = np.array(counts, dtype=np.float32), float(total)
    else:
        weights, divisor = np.array([n / total for n in counts], dtype=np.float32), 1.0
    means: NDArrays = []
    for index, ref in enumerate(results[0][0]):
        layers = [layers[index] for layers, _ in results]
        if all(layer.dtype == np.float32 for layer in layers):
            means.append(_mean_float32(layers, weights, divisor))
        else:
            sums = add_weighted_many([], [([layer], float(n))
                                          for layer, n in zip(layers, counts, strict=True)])
            means.extend(weighted_mean_from_sums(sums, total, [ref]))
    return means


aggregate_weighted_mean = aggregate
"""fedsilo's descriptive name for :func:`aggregate`."""

_FLOAT32_EXACT_INT = 1 << 24
"""The largest count float32 holds exactly along with every smaller integer."""

_MEAN_BLOCK_BYTES = 8 << 20
"""Upper bound of the float32 block of rows in :func:`_mean_float32`."""


def _mean_float32(layers: list[NDArray], weights: NDArray, divisor: float) -> NDArray:
    """``(weights @ layers) / divisor`` in float32, block by block, written straight into
    the result; each block is divided while it is still in cache."""
    out = np.empty(layers[0].shape, dtype=np.float32)
    flat_out = out.reshape(-1)
    flats = [np.asarray(layer).reshape(-1) for layer in layers]
    chunk = max(1024, min(_BLOCK_CHUNK, _MEAN_BLOCK_BYTES // (4 * len(flats))))
    block = np.empty((len(flats), chunk), dtype=np.float32)
    for start in range(0, flat_out.size, chunk):
        stop = min(start + chunk, flat_out.size)
        rows = block[:, :stop - start]
        for row, flat in enumerate(flats):
            rows[row] = flat[start:stop]
        part = flat_out[start:stop]
        np.dot(weights, rows, out=part)
        if divisor != 1.0:
            np.divide(part, divisor, out=part)
    return out


def aggregate_inplace(results: list[tuple[ClientProxy, FitRes]]) -> NDArrays:
    """Example-weighted mean of the models in fit results, decoded one at a time.

    Flower's in-place FedAvg: each result's parameters are decoded, folded into float64
    running sums and dropped, so the memory held is the sums plus one decoded model. Layers
    come back in the first result's float dtypes (float64 for integer layers).
    """
    if not results:
        raise ValueError("aggregate_inplace needs at least one (client, FitRes) result")
    total = sum(int(res.num_examples) for _, res in results)
    _check_total(total)
    sums: NDArrays = []
    like: NDArrays = []
    for _, res in results:
        layers = parameters_to_ndarrays(res.parameters)
        if not sums:
            like = [np.empty(0, dtype=layer.dtype) for layer in layers]
        sums = add_weighted(sums, layers, float(res.num_examples))
        del layers
    return weighted_mean_from_sums(sums, total, like)


def add_weighted(sums: NDArrays, layers: NDArrays, weight: float) -> NDArrays:
    """Fold ``weight * layers`` into the float64 running ``sums`` (empty: start new sums).

    The running sums are updated in place and returned; memory stays one model.
    """
    return add_weighted_many(sums, [(layers, weight)])


_FOLD_CHUNK = 1 << 15
"""Elements per step when folding one update: a chunk of the sums and a float64 scratch
stay in cache."""

_BLOCK_CHUNK = 1 << 14
"""Elements per step when folding several updates; measured best for 20 and 50 updates."""


def add_weighted_many(sums: NDArrays, batch: list[tuple[NDArrays, float]]) -> NDArrays:
    """Fold every ``weight * layers`` of ``batch`` into the float64 running ``sums``.

    Works chunk by chunk, so the sums cross memory once per batch instead of once per
    update, and no model-sized temporary is ever allocated. One update is cast, scaled and
    added per cache-sized chunk. Several updates are cast into the rows of a block, and one
    matrix-vector product with the weights (BLAS) scales and sums them: about 1.5 times
    the throughput of one numpy pass per update and operation. BLAS may add the rows in
    another order than one update at a time would, which can change the last bits.
    """
    if not batch:
        return sums
    if not sums:
        sums = [np.zeros(layer.shape, dtype=np.float64) for layer in batch[0][0]]
    _check_like(sums, [layers for layers, _ in batch])
    if len(batch) == 1:
        _fold_one(sums, batch[0][0], float(batch[0][1]))
    else:
        _fold_block(sums, batch)
    return sums


def start_weighted(layers: NDArrays, weight: float, buffer: NDArray | None = None) -> NDArrays:
    """The float64 running sums ``weight * layers``, to fold more updates into.

    With ``buffer`` (a uint8 array of 8 bytes per element of ``layers``) the sums are
    views of it, written without being zeroed first: a caller that keeps a buffer from
    round to round spares the kernel mapping and zeroing a model's worth of new pages.
    """
    shapes = [np.shape(layer) for layer in layers]
    sizes = [int(np.prod(shape)) for shape in shapes]
    if buffer is None:
        buffer = np.empty(8 * sum(sizes), dtype=np.uint8)
    if buffer.dtype != np.uint8 or buffer.size != 8 * sum(sizes):
        raise ValueError(f"the sums of {sum(sizes)} elements need a uint8 buffer of "
                         f"{8 * sum(sizes)} bytes, got {buffer.size} of {buffer.dtype}")
    whole = buffer.view(np.float64)
    sums, start = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        sums.append(whole[start:start + size].reshape(shape))
        start += size
    _fold_one(sums, layers, float(weight), first=True)
    return sums


def _check_like(reference: NDArrays, models: list[NDArrays]) -> None:
    """Every model has the reference's number of layers and each layer its shape."""
    for layers in models:
        if len(layers) != len(reference):
            raise ValueError(f"results have {len(layers)} and {len(reference)} layers")
        for index, (ref, layer) in enumerate(zip(reference, layers, strict=True)):
            if layer.shape != ref.shape:
                raise ValueError(f"layer {index} has shape {layer.shape}, expected {ref.shape}")


def _check_total(total: float) -> None:
    if total <= 0:
        raise ValueError(
            f"the results hold {total} examples in all; the weights need a positive sum")


def _fold_one(sums: NDArrays, layers: NDArrays, weight: float, first: bool = False) -> None:
    """``sums += weight * layers`` chunk by chunk; ``first``: ``sums = weight * layers``."""
    scratch = np.empty(_FOLD_CHUNK, dtype=np.float64)
    for acc, layer in zip(sums, layers, strict=True):
        flat_acc, flat = acc.reshape(-1), np.asarray(layer).reshape(-1)
        for start in range(0, flat_acc.size, _FOLD_CHUNK):
            stop = min(start + _FOLD_CHUNK, flat_acc.size)
            target = flat_acc[start:stop]
            part = target if first else scratch[:stop - start]
            part[...] = flat[start:stop]  # a plain cast: faster than a casting multiply
            part *= weight
            if not first:
                target += part


def _fold_block(sums: NDArrays, batch: list[tuple[NDArrays, float]]) -> None:
    block = np.empty((len(batch), _BLOCK_CHUNK), dtype=np.float64)
    weights = np.array([float(weight) for _, weight in batch], dtype=np.float64)
    for index, acc in enumerate(sums):
        flat_acc = acc.reshape(-1)
        flats = [np.asarray(layers[index]).reshape(-1) for layers, _ in batch]
        for start in range(0, flat_acc.size, _BLOCK_CHUNK):
            stop = min(start + _BLOCK_CHUNK, flat_acc.size)
            rows = block[:, :stop - start]
            for row, flat in enumerate(flats):
                rows[row] = flat[start:stop]  # cast to float64
            flat_acc[start:stop] += weights @ rows


def weighted_mean_from_sums(sums: NDArrays, total: float, like: NDArrays) -> NDArrays:
    """Divide running sums by the total weight; cast each layer to the dtype of ``like``.

    Works in place, in one pass over each layer: the quotient of a narrower dtype is written
    over the start of the layer's own float64 buffer as it is computed, so the mean costs no
    model-sized temporary and reads the sums once. The sums are spent afterwards; the
    returned layers are views into their buffers.
    """
    _check_total(total)
    return [_divide_narrowing(acc, float(total), _float_dtype(ref))
            for acc, ref in zip(sums, like, strict=True)]


def _divide_narrowing(acc: NDArray, total: float, dtype: np.dtype[Any]) -> NDArray:
    """``(acc / total).astype(dtype)``, written over the start of ``acc``'s own buffer."""
    if dtype == acc.dtype or not acc.flags.c_contiguous:
        np.divide(acc, total, out=acc)
        return acc.astype(dtype, copy=False)
    flat = acc.reshape(-1)
    narrow = flat.view(np.uint8)[:flat.size * dtype.itemsize].view(dtype)
    # Element i is written at byte i * itemsize and read from byte 8 * i: a chunk only
    # overwrites elements of earlier chunks (which are already read), except that the
    # first chunk overlaps itself, which numpy's ufuncs buffer. The quotient is computed in
    # float64 and then cast, as dividing first and casting after would.
    for start in range(0, flat.size, _FOLD_CHUNK):
        stop = min(start + _FOLD_CHUNK, flat.size)
        np.divide(flat[start:stop], total, out=narrow[start:stop])
    return narrow.reshape(acc.shape)


def _float_dtype(reference: NDArray) -> np.dtype[Any]:
    return reference.dtype if np.issubdtype(reference.dtype, np.floating) else np.dtype(np.float64)


def weighted_loss_avg(results: list[tuple[int, float]]) -> float:
    """Example-weighted mean of client losses."""
    total = sum(n for n, _ in results)
    if total <= 0:
        raise ValueError("weighted_loss_avg needs a positive total number of examples")
    return float(sum(n * loss for n, loss in results) / total)


# Robust rules: they need every result at once --------------------------------------------


def _stack_layers(results: list[tuple[NDArrays, int]]) -> list[NDArray]:
    """One ``(clients, *shape)`` array per layer, after checking the results agree."""
    if not results:
        raise ValueError("the rule needs at least one result")
    first = results[0][0]
    for index, (layers, _) in enumerate(results):
        if len(layers) != len(first):
            raise ValueError(f"result {index} has {len(layers)} layers, expected {len(first)}")
        for k, (layer, ref) in enumerate(zip(layers, first, strict=True)):
            if layer.shape != ref.shape:
                raise ValueError(
                    f"result {index} layer {k} has shape {layer.shape}, expected {ref.shape}")
    return [np.stack(column) for column in zip(*(layers for layers, _ in results), strict=True)]


def aggregate_median(results: list[tuple[NDArrays, int]]) -> NDArrays:
    """Coordinate-wise median of the client models (Yin et al., 2018); example counts unused."""
    return [np.median(stacked, axis=0) for stacked in _stack_layers(results)]


def aggregate_trimmed_avg(
    results: list[tuple[NDArrays, int]], proportiontocut: float
) -> NDArrays:
    """Coordinate-wise mean after dropping the ``floor(beta * n)`` lowest and highest values.

    Yin et al. (2018); Flower's name and parameters (:data:`aggregate_trimmed_mean` is the
    same function). Example counts are unused. ``proportiontocut`` (beta) must lie in
    [0, 0.5): at 0.5 or more nothing would be left to average.
    """
    if not 0.0 <= proportiontocut < 0.5:
        raise ValueError(f"proportiontocut must be in [0, 0.5), got {proportiontocut}")
    trimmed: NDArrays = []
    for stacked in _stack_layers(results):
        n = stacked.shape[0]
        cut = int(proportiontocut * n)
        ordered = np.sort(stacked, axis=0)
        trimmed.append(np.mean(ordered[cut:n - cut], axis=0))
    return trimmed


aggregate_trimmed_mean = aggregate_trimmed_avg
"""fedsilo's descriptive name for :func:`aggregate_trimmed_avg`."""


def _flatten(layers: NDArrays) -> NDArray:
    return np.concatenate([np.ravel(layer) for layer in layers]).astype(np.float64, copy=False)


def pairwise_squared_distances(models: list[NDArrays]) -> NDArray:
    """``D[i, j] = ||w_i - w_j||^2`` over all layers, in float64."""
    flat = np.stack([_flatten(layers) for layers in models])
    distances = np.zeros((len(models), len(models)))
    for i in range(len(models)):
        diff = flat - flat[i]
        distances[i] = np.einsum("ij,ij->i", diff, diff)
    return distances


def krum_scores(distances: NDArray, num_malicious: int) -> NDArray:
    """Krum score of each model: the sum of its squared distances to its ``n - f - 2``
    nearest other models (at least one), Blanchard et al. (2017)."""
    n = distances.shape[0]
    num_closest = max(1, n - num_malicious - 2)
    scores = np.empty(n)
    for i in range(n):
        others = np.sort(np.delete(distances[i], i))
        scores[i] = float(np.sum(others[:num_closest]))
    return scores


def aggregate_krum(
    results: list[tuple[NDArrays, int]], num_malicious: int, to_keep: int = 0
) -> NDArrays:
    """Krum: the model with the lowest Krum score; with ``to_keep > 0`` (Multi-Krum), the
    example-weighted mean of the ``to_keep`` lowest-scoring models.

    Parameters
    ----------
    results
        Each client's layers and number of examples.
    num_malicious
        ``f``, the number of Byzantine clients to tolerate.
    to_keep
        0 for Krum; the number of models Multi-Krum averages otherwise.
    """
    if not results:
        raise ValueError("Krum needs at least one result")
    _stack_layers(results[:1])
    scores = krum_scores(pairwise_squared_distances([m for m, _ in results]), num_malicious)
    if to_keep > 0:
        best = np.argsort(scores, kind="stable")[:to_keep]
        return aggregate([results[i] for i in best])
    return [np.array(layer) for layer in results[int(np.argmin(scores))][0]]


def aggregate_bulyan(
    results: list[tuple[NDArrays, int]],
    num_malicious: int,
    aggregation_rule: Callable[..., NDArrays] = aggregate_krum,
    **aggregation_rule_kwargs: Any,
) -> NDArrays:
    """Bulyan (El Mhamdi et al., 2018).

    ``aggregation_rule`` picks ``theta = n - 2f`` models one at a time, each from the models
    not picked yet; then each coordinate is the mean of the ``beta = theta - 2f`` picked
    values closest to the picked models' coordinate-wise median. Needs ``n >= 4f + 3``.

    Parameters
    ----------
    results
        Each client's layers and number of examples; not modified.
    num_malicious
        ``f``, the number of Byzantine clients to tolerate.
    aggregation_rule
        A Byzantine-resilient rule that returns one of the models it is given, called as
        ``aggregation_rule(results=..., num_malicious=..., **aggregation_rule_kwargs)``
        (Krum, with ``to_keep=0``, by default).
    """
    n = len(results)
    if n < 4 * num_malicious + 3:
        raise ValueError(
            f"Bulyan needs at least 4 * num_malicious + 3 = {4 * num_malicious + 3} results, "
            f"got {n}; lower num_malicious_clients or sample more clients")
    _stack_layers(results)
    theta = n - 2 * num_malicious
    beta = theta - 2 * num_malicious
    remaining = list(results)
    selected: list[tuple[NDArrays, int]] = []
    for _ in range(theta):
        chosen = aggregation_rule(results=remaining, num_malicious=num_malicious,
                                  **aggregation_rule_kwargs)
        index = _index_of_model(chosen, remaining)
        selected.append(remaining.pop(index))
    return mean_closest_to_median(selected, beta)


def mean_closest_to_median(results: list[tuple[NDArrays, int]], beta: int) -> NDArrays:
    """Bulyan's second step: each coordinate is the mean of the ``beta`` values closest to
    the coordinate-wise median of ``results`` (example counts are not used)."""
    aggregated: NDArrays = []
    for stacked in _stack_layers(results):
        median = np.median(stacked, axis=0)
        order = np.argsort(np.abs(stacked - median), axis=0, kind="stable")[:beta]
        aggregated.append(np.mean(np.take_along_axis(stacked, order, axis=0), axis=0))
    return aggregated


def _index_of_model(model: NDArrays, candidates: list[tuple[NDArrays, int]]) -> int:
    """The first candidate equal to ``model``, layer by layer."""
    for index, (layers, _) in enumerate(candidates):
        if len(layers) == len(model) and all(
                np.array_equal(a, b) for a, b in zip(layers, model, strict=True)):
            return index
    raise ValueError("Bulyan's aggregation_rule must return one of the models it is given "
                     "(a selection rule such as aggregate_krum with to_keep=0), not a blend")


# Fair aggregation ------------------------------------------------------------------------


def qffl_client_step(
    weights_before: NDArrays, client_weights: NDArrays, loss: float, q: float,
    learning_rate: float,
) -> tuple[NDArrays, float]:
    """One client's share of a q-FFL step (Li et al., 2020): ``(D_k, h_k)``.

    With ``L = 1 / learning_rate`` and the client's update ``dw_k = L (w - w_k)``:
    ``D_k = F_k^q dw_k`` and ``h_k = q F_k^(q-1) ||dw_k||^2 + L F_k^q``, where ``loss`` is
    the client's ``F_k`` at ``weights_before`` (``w``).
    """
    lipschitz = 1.0 / learning_rate
    base = float(loss) + 1e-10
    grads = [lipschitz * (w0.astype(np.float64) - w)
             for w0, w in zip(weights_before, client_weights, strict=True)]
    delta = [np.float_power(base, q) * grad for grad in grads]
    squared_norm = float(sum(np.sum(np.square(g)) for g in grads))
    h = q * np.float_power(base, q - 1) * squared_norm + lipschitz * np.float_power(base, q)
    return delta, float(h)


def aggregate_qffl(
    parameters: NDArrays, deltas: list[NDArrays], hs_fll: list[float] | list[NDArrays]
) -> NDArrays:
    """q-FedAvg's new model: ``w - sum_k D_k / sum_k h_k`` (Li et al., 2020).

    Flower's signature. ``deltas`` and ``hs_fll`` hold each client's ``D_k`` and ``h_k``
    (see :func:`qffl_client_step`); each layer keeps the float dtype of ``parameters``.
    """
    if not deltas or len(deltas) != len(hs_fll):
        raise ValueError("q-FedAvg needs one h per client delta and at least one delta")
    denominator = float(np.sum(np.asarray(hs_fll, dtype=np.float64)))
    sums = add_weighted_many([], [(list(delta), 1.0) for delta in deltas])
    return [(w0 - d / denominator).astype(_float_dtype(w0), copy=False)
            for w0, d in zip(parameters, sums, strict=True)]


# Tree ensembles ----------------------------------------------------------------------------


def aggregate_xgb_bagging(global_model: bytes | None, client_model: bytes) -> bytes:
    """Bagging of XGBoost trees: the global model with one client's newest trees appended.

    Both models are XGBoost's JSON (``Booster.save_raw("json")``); ``client_model`` holds
    the trees the client grew this round, and its first ``num_parallel_tree`` trees (one
    boosting round) are appended as a new boosting round of the global model, renumbered
    after the global model's trees. Without a global model yet, the client's model is the
    start. The result is JSON bytes that ``Booster.load_model(bytearray(...))`` reads.
    """
    if not global_model:
        return client_model
    merged = _xgb_json(global_model, "global model")
    gbtree = merged["learner"]["gradient_booster"]["model"]
    grown = _xgb_json(client_model, "client model")["learner"]["gradient_booster"]["model"]
    have = int(gbtree["gbtree_model_param"]["num_trees"])
    per_round = int(grown["gbtree_model_param"]["num_parallel_tree"])
    new_trees = grown["trees"][:per_round]
    if len(new_trees) < per_round:
        raise ValueError(f"the client model has {len(new_trees)} trees, fewer than one "
                         f"boosting round of num_parallel_tree={per_round}")
    for offset, tree in enumerate(new_trees):
        tree["id"] = have + offset
        gbtree["trees"].append(tree)
        gbtree["tree_info"].append(0)
    gbtree["gbtree_model_param"]["num_trees"] = str(have + per_round)
    gbtree["iteration_indptr"].append(gbtree["iteration_indptr"][-1] + per_round)
    return json.dumps(merged).encode()


def _xgb_json(model: bytes, what: str) -> dict[str, Any]:
    try:
        decoded = json.loads(bytes(model))
        decoded["learner"]["gradient_booster"]["model"]["gbtree_model_param"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"the {what} is not an XGBoost gbtree model in JSON "
                         f"(Booster.save_raw('json')): {exc}") from exc
    return decoded  # type: ignore[no-any-return]


# Server optimizers: one step from the averaged model ---------------------------------------


def fedavgm_step(
    current: NDArrays,
    averaged: NDArrays,
    momentum: NDArrays | None,
    server_learning_rate: float,
    server_momentum: float,
) -> tuple[NDArrays, NDArrays | None]:
    """FedAvgM (Hsu et al., 2019): ``v <- beta v + (w - avg)``, ``w <- w - lr v``.

    ``momentum`` is None before the first step (then ``v = w - avg``); with
    ``server_momentum == 0`` no momentum is kept and None is returned for it.
    """
    pseudo_gradient = [w - a for w, a in zip(current, averaged, strict=True)]
    if server_momentum > 0.0:
        if momentum is None:
            momentum = pseudo_gradient
        else:
            momentum = [server_momentum * v + g
                        for v, g in zip(momentum, pseudo_gradient, strict=True)]
        pseudo_gradient = momentum
    else:
        momentum = None
    new = [w - server_learning_rate * g for w, g in zip(current, pseudo_gradient, strict=True)]
    return new, momentum


OptimizerStep = tuple[NDArrays, NDArrays, NDArrays]


def _first_moment(m_t: NDArrays | None, delta: NDArrays, beta_1: float) -> NDArrays:
    previous = m_t if m_t else [np.zeros_like(d) for d in delta]
    return [beta_1 * m + (1 - beta_1) * d for m, d in zip(previous, delta, strict=True)]


def _zeros_if_none(v_t: NDArrays | None, like: NDArrays) -> NDArrays:
    return v_t if v_t else [np.zeros_like(d) for d in like]


def fedadagrad_step(
    current: NDArrays, averaged: NDArrays, m_t: NDArrays | None, v_t: NDArrays | None,
    *, eta: float, beta_1: float, tau: float,
) -> OptimizerStep:
    """FedAdagrad (Reddi et al., 2021): ``v <- v + delta^2``, ``w <- w + eta m / (sqrt v + tau)``
    with ``delta = avg - w`` and ``m <- beta_1 m + (1 - beta_1) delta``."""
    delta = [a - w for a, w in zip(averaged, current, strict=True)]
    m_new = _first_moment(m_t, delta, beta_1)
    v_new = [v + d * d for v, d in zip(_zeros_if_none(v_t, delta), delta, strict=True)]
    new = [w + eta * m / (np.sqrt(v) + tau)
           for w, m, v in zip(current, m_new, v_new, strict=True)]
    return new, m_new, v_new


def fedadam_step(
    current: NDArrays, averaged: NDArrays, m_t: NDArrays | None, v_t: NDArrays | None,
    *, server_round: int, eta: float, beta_1: float, beta_2: float, tau: float,
) -> OptimizerStep:
    """FedAdam (Reddi et al., 2021): Adam moments of ``delta = avg - w``.

    The step size carries Adam's bias correction as Flower computes it, with exponent
    ``server_round + 1``: ``eta sqrt(1 - beta_2^(t+1)) / (1 - beta_1^(t+1))``.
    """
    delta = [a - w for a, w in zip(averaged, current, strict=True)]
    m_new = _first_moment(m_t, delta, beta_1)
    v_new = [beta_2 * v + (1 - beta_2) * d * d
             for v, d in zip(_zeros_if_none(v_t, delta), delta, strict=True)]
    step = (eta * np.sqrt(1 - np.power(beta_2, server_round + 1.0))
            / (1 - np.power(beta_1, server_round + 1.0)))
    new = [w + step * m / (np.sqrt(v) + tau)
           for w, m, v in zip(current, m_new, v_new, strict=True)]
    return new, m_new, v_new


def fedyogi_step(
    current: NDArrays, averaged: NDArrays, m_t: NDArrays | None, v_t: NDArrays | None,
    *, eta: float, beta_1: float, beta_2: float, tau: float,
) -> OptimizerStep:
    """FedYogi (Reddi et al., 2021): ``v <- v - (1 - beta_2) delta^2 sign(v - delta^2)``,
    ``w <- w + eta m / (sqrt v + tau)``."""
    delta = [a - w for a, w in zip(averaged, current, strict=True)]
    m_new = _first_moment(m_t, delta, beta_1)
    v_new = [v - (1.0 - beta_2) * d * d * np.sign(v - d * d)
             for v, d in zip(_zeros_if_none(v_t, delta), delta, strict=True)]
    new = [w + eta * m / (np.sqrt(v) + tau)
           for w, m, v in zip(current, m_new, v_new, strict=True)]
    return new, m_new, v_new


# Differential privacy ----------------------------------------------------------------------


def gaussian_noise_stddev(
    noise_multiplier: float, clipping_norm: float, num_sampled_clients: int
) -> float:
    """Std of the noise added to the mean of ``num_sampled_clients`` clipped updates:
    ``z C / m`` (the mean's sensitivity is ``C / m``)."""
    return float(noise_multiplier * clipping_norm / num_sampled_clients)


def add_gaussian_noise(
    arrays: NDArrays, stddev: float, rng: np.random.Generator
) -> NDArrays:
    """``arrays`` plus independent N(0, stddev^2) noise per coordinate, in the input dtypes."""
    return [(a + rng.normal(0.0, stddev, size=a.shape)).astype(_float_dtype(a), copy=False)
            for a in arrays]


def adaptive_clip_norm_step(
    clipping_norm: float, clipped_fraction: float, target_quantile: float, learning_rate: float
) -> float:
    """Geometric update of the clipping norm so that a ``target_quantile`` share of updates
    gets clipped: ``C <- C exp(lr (c - gamma))`` with ``c`` the (noised) clipped fraction.

    This is Andrew et al. (2021)'s ``C exp(-lr (b - q))`` written for the clipped share
    ``c = 1 - b`` and ``gamma = 1 - q``: too many clipped updates raise ``C``.
    """
    return float(clipping_norm * np.exp(learning_rate * (clipped_fraction - target_quantile)))


def adaptive_noise_split(
    noise_multiplier: float, num_sampled_clients: int, clipped_count_stddev: float | None
) -> tuple[float, float]:
    """Split a total noise multiplier ``z`` between the clipped count and the updates.

    Returns ``(sigma_b, z_delta)`` with ``z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)`` so that
    releasing both costs the privacy of one Gaussian mechanism with multiplier ``z``
    (Andrew et al., 2021). ``sigma_b`` defaults to ``m / 20``.
    """
    if noise_multiplier <= 0:
        return (0.0 if clipped_count_stddev is None else clipped_count_stddev), 0.0
    sigma_b = num_sampled_clients / 20 if clipped_count_stddev is None else clipped_count_stddev
    if noise_multiplier >= 2 * sigma_b:
        raise ValueError(
            f"clipped_count_stddev {sigma_b} is too small for noise_multiplier "
            f"{noise_multiplier}: it must exceed noise_multiplier / 2; raise "
            "clipped_count_stddev (default num_sampled_clients / 20) or lower noise_multiplier")
    return sigma_b, float((noise_multiplier ** -2 - (2 * sigma_b) ** -2) ** -0.5)
