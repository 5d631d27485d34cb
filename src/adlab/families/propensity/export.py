"""How a propensity scorer is exported: numeric scaling and a sigmoid inside the graph.

The graph maps unscaled numeric values and vocabulary indices to a purchase probability; the
vocabularies (strings, which graph runtimes handle poorly) and the missing-value fill (a select over
every value, which costs ONNX Runtime more than the rest of the scaling) live in `preprocessing.json`,
where `adlab.serving.schema` applies them with lookup tables built once. A plain ensemble (one hidden
layer, no numeric embedding) is exported folded (`FoldedEnsembleGraph`) for one-row latency.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from adlab.data.features import TabularFeatures
from adlab.harness.checkpoints import StoredRun
from adlab.harness.exporting import PARITY_TOLERANCE, ExportSpec, preprocessing_header
from adlab.serving.package import GRAPH_MAX_ROWS

GRAPH_CALL_BYTES = 512 * 2**20  # budget of a graph call's intermediate tensors (see graph_batch_rows)


class TabularScoringGraph(nn.Module):
    """A propensity scorer with its numeric scaling: unscaled values in, purchase probability out.

    Args:
        scorer: module mapping `(categorical, scaled numeric)` to logits `(batch,)` (a `PropensityModule`).
        mean: per-column mean of the (filled) training values `(n_num,)`.
        scale: per-column standard deviation `(n_num,)`, zeros replaced by 1.

    Shapes: `categorical (batch, n_cat) int64` vocabulary indices (0 = unknown),
    `numeric (batch, n_num) float32` unscaled values with missing ones already filled ->
    `(batch,) float32` probability.
    """

    def __init__(self, scorer: nn.Module, mean: Sequence[float], scale: Sequence[float]):
        super().__init__()
        self.scorer = scorer
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def forward(self, categorical: Tensor, numeric: Tensor) -> Tensor:
        return torch.sigmoid(self.scorer(categorical, (numeric - self.mean) / self.scale))


class FoldedEnsembleGraph(nn.Module):
    """A plain propensity ensemble (no numeric embedding, one hidden layer) folded for one-row latency.

    The same function as `TabularScoringGraph` over that model, with the algebra done once at export:
    each categorical embedding table is multiplied into its rows of every member's first layer (a lookup
    then yields that column's share of the hidden pre-activations of all members at once), the numeric
    scaling is folded into the numeric rows of the first layer, and the members' output layers and their
    mean into one vector. A request then costs a few Gathers, one MatMul per layer and a sigmoid: about a
    third fewer graph nodes than the unfolded graph, whose per-node overhead dominates one row.

    Shapes: as `TabularScoringGraph` (`categorical (batch, n_cat) int64`, unscaled `numeric (batch, n_num)
    float32` -> `(batch,) float32` probability).
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], scale: Sequence[float]):
        super().__init__()
        first, last = [layer for layer in model.net.layers if hasattr(layer, "weight")]
        members, _, hidden = first.weight.shape
        weight = first.weight.detach()  # (members, inputs, hidden)
        bias = first.bias.detach().reshape(members, hidden)
        tables, offset = [], 0
        for table in model.net.embeddings:  # (members, cardinality, width)
            width = table.shape[-1]
            rows = weight[:, offset : offset + width]
            # (cardinality, members * hidden): a looked-up row is every member's share at once
            tables.append(torch.einsum("mcw,mwh->cmh", table.detach(), rows).flatten(1))
            offset += width
        numeric_rows = weight[:, offset:]  # (members, n_selected, hidden)
        mean_t = torch.tensor(mean, dtype=torch.float32)
        scale_t = torch.tensor(scale, dtype=torch.float32)
        categorical_index, numeric_index = model.column_selection()
        if numeric_index is not None:
            mean_t, scale_t = mean_t[numeric_index], scale_t[numeric_index]
        # (x - mean) / scale @ W = x @ (W / scale) - (mean / scale) @ W
        folded = numeric_rows / scale_t[None, :, None]
        bias = bias - torch.einsum("f,mfh->mh", mean_t / scale_t, numeric_rows)
        self.tables = nn.ParameterList(nn.Parameter(t, requires_grad=False) for t in tables)
        # the model's column selection (None: every column, no gather)
        self.register_buffer("categorical_index", categorical_index)
        self.register_buffer("numeric_index", numeric_index)
        # (n_num, members * hidden)
        self.register_buffer("numeric_weight", folded.permute(1, 0, 2).flatten(1))
        self.register_buffer("hidden_bias", bias.flatten())
        # mean over members of each member's output layer: one (members * hidden) vector and a scalar
        self.register_buffer("output_weight", last.weight.detach().reshape(members * hidden, 1) / members)
        self.register_buffer("output_bias", last.bias.detach().mean().reshape(1))

    @staticmethod
    def foldable(model: nn.Module) -> bool:
        """A `PropensityModule` of the shape this graph folds (anything else is exported unfolded)."""
        net = getattr(model, "net", None)
        linear = [layer for layer in getattr(net, "layers", []) if hasattr(layer, "weight")]
        return (
            net is not None
            and getattr(net, "numeric_embedding", "missing") is None
            and len(linear) == 2
            and linear[-1].weight.shape[-1] == 1
        )

    def forward(self, categorical: Tensor, numeric: Tensor) -> Tensor:
        if self.categorical_index is not None:
            categorical = categorical.index_select(1, self.categorical_index)
        if self.numeric_index is not None:
            numeric = numeric.index_select(1, self.numeric_index)
        hidden = numeric @ self.numeric_weight + self.hidden_bias
        for column, table in enumerate(self.tables):
            hidden = hidden + table.index_select(0, categorical[:, column])
        return torch.sigmoid((torch.relu(hidden) @ self.output_weight + self.output_bias).squeeze(-1))


def _tabular_parity_inputs(features: TabularFeatures, rows: int, seed: int) -> tuple[Tensor, Tensor]:
    """Inputs drawn from the fitted schema: vocabulary indices drawn uniformly (0 = unseen included),
    numerics spread around the training distribution (two standard deviations)."""
    generator = np.random.default_rng(seed)
    categorical = (
        np.stack(
            [generator.integers(0, len(features.vocabularies[c]) + 1, rows) for c in features.categorical],
            axis=1,
        )
        if features.categorical
        else np.zeros((rows, 0), dtype=np.int64)
    )
    mean, scale = np.asarray(features.mean), np.asarray(features.scale)
    numeric = mean + scale * generator.normal(0.0, 2.0, size=(rows, len(mean)))
    return torch.from_numpy(categorical.astype(np.int64)), torch.from_numpy(numeric.astype(np.float32))


def graph_batch_rows(model: nn.Module) -> int:
    """Rows per graph call for a tabular network: GRAPH_CALL_BYTES over twice its activation bytes per
    row, between 256 and 65,536 (the 16-member bidding scorer gets about 41,000; the cross-fitted 80-member
    periodic flagship measured about 270 kB per row in ONNX Runtime, 18 GB for 65,536 rows)."""
    net = getattr(model, "net", None)
    if not hasattr(net, "activation_floats_per_row"):
        return GRAPH_MAX_ROWS
    row_bytes = 2 * 4 * max(1, net.activation_floats_per_row())
    return int(min(GRAPH_MAX_ROWS, max(256, GRAPH_CALL_BYTES // row_bytes)))


def propensity_spec(model: nn.Module, stored: StoredRun) -> ExportSpec:
    """The propensity scorer with numeric scaling in the graph; vocabularies and fill in the JSON."""
    state = TabularFeatures.from_dict(stored.preprocessing)
    source = (stored.config.get("data") or {}).get("source") or {}
    for name in ("out_of_fold_logits", "out_of_fold_targets"):
        # a cross-fitted ensemble's scores of its training customers are not part of the scorer
        if getattr(model, name, None) is not None:
            setattr(model, name, None)
    graph = TabularScoringGraph(model, state.mean, state.scale).eval()
    example = _tabular_parity_inputs(state, 64, seed=0)
    if FoldedEnsembleGraph.foldable(model):
        folded = FoldedEnsembleGraph(model, state.mean, state.scale).eval()
        with torch.inference_mode():
            gap = (folded(*example) - graph(*example)).abs().max().item()
        # the folding only reorders float arithmetic; any larger gap means it does not apply: keep the plain graph
        if gap <= PARITY_TOLERANCE / 10:
            graph = folded
        else:
            warnings.warn(
                f"the folded scoring graph differs by {gap:.2g}; exporting the unfolded graph", stacklevel=2
            )
    # which columns the network reads (a selected model reads a few): serving asks only for those
    categorical_index, numeric_index = model.column_selection()
    reads_categorical = set(
        range(len(state.categorical)) if categorical_index is None else categorical_index.tolist()
    )
    reads_numeric = set(range(len(state.numeric)) if numeric_index is None else numeric_index.tolist())
    features = [
        {
            "name": name,
            "kind": "categorical",
            "vocabulary": state.vocabularies[name],
            "reads": position in reads_categorical,
        }
        for position, name in enumerate(state.categorical)
    ] + [
        {
            "name": name,
            "kind": "numeric",
            "fill": state.fill[position],
            "mean": state.mean[position],
            "scale": state.scale[position],
            "reads": position in reads_numeric,
            # the train split's range (null for runs trained before it was recorded): serving warns outside it
            "min": state.minimum[position] if state.minimum is not None else None,
            "max": state.maximum[position] if state.maximum is not None else None,
        }
        for position, name in enumerate(state.numeric)
    ]
    preprocessing = {
        **preprocessing_header("tabular"),
        "features": features,
        # training refused missing numerics unless an imputation was configured; serving does the same
        "allow_missing_numeric": source.get("impute") is not None,
        "id_column": source.get("id_column"),
        "target": source.get("target"),
        "inputs": {
            "categorical": "(batch, n_categorical) int64: 1 + position in the feature's vocabulary, 0 = unseen",
            "numeric": "(batch, n_numeric) float32: unscaled values, missing ones replaced by `fill`",
        },
        "in_graph": ["numeric standardisation (mean, scale)", "sigmoid"],
        # "folded": embeddings and scaling multiplied into the first layer (FoldedEnsembleGraph)
        "graph": "folded" if isinstance(graph, FoldedEnsembleGraph) else "unfolded",
        # scorers split larger batches into calls of at most this many rows, so that a large ensemble's
        # intermediate tensors stay within GRAPH_CALL_BYTES whatever the chunk size of a file
        "graph_batch_rows": graph_batch_rows(model),
        "outside_graph": [
            "category -> 1 + vocabulary position (categories are text, as in training; unseen -> 0)",
            "missing numeric -> fill (refused when allow_missing_numeric is false)",
        ],
    }
    return ExportSpec(graph, example, ["categorical", "numeric"], ["probability"], preprocessing)
