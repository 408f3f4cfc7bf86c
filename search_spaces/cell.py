"""`cell`: a NAS-Bench-201-style cell space: each edge of a DAG picks one op; cells are stacked."""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import torch
from torch import nn

from nas.elastic import OpChoice
from nas.layers import GlobalAvgPool, Zero
from nas.space import Config
from nas.supernet import Supernet
from search_spaces import register

OPS = ("zero", "skip", "avg_pool", "conv1x1", "conv3x3")


def default_topology(nodes: int = 4) -> nx.DiGraph:
    """The NAS-Bench-201 cell: nodes 0..n-1, an edge from every node to every later one."""
    graph = nx.DiGraph()
    graph.add_nodes_from(range(nodes))
    graph.add_edges_from((i, j) for j in range(nodes) for i in range(j))
    return graph


def _check_topology(graph: nx.DiGraph) -> list[int]:
    """Nodes in topological order; the DAG must have one input (first) and one output (last)."""
    if not isinstance(graph, nx.DiGraph) or graph.number_of_edges() == 0:
        raise ValueError("the 'topology' parameter of Cell must be a networkx.DiGraph with at least one edge")
    if not nx.is_directed_acyclic_graph(graph):
        raise ValueError("the 'topology' parameter of Cell must be acyclic (a DAG)")
    order = list(nx.topological_sort(graph))
    sources = [n for n in order if graph.in_degree(n) == 0]
    sinks = [n for n in order if graph.out_degree(n) == 0]
    if len(sources) != 1 or len(sinks) != 1:
        raise ValueError(f"the 'topology' DAG must have one input and one output node, got inputs {sources} and outputs {sinks}")
    return order


def _op(name: str, channels: int) -> nn.Module:
    if name == "zero":
        return Zero()
    if name == "skip":
        return nn.Identity()
    if name == "avg_pool":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    k = 1 if name == "conv1x1" else 3
    return nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, k, 1, k // 2, bias=False), nn.BatchNorm2d(channels))


def _edge_name(i: object, j: object) -> str:
    return f"edge.{i}-{j}"


class Cell(nn.Module):
    """One cell: node j sums the ops on its incoming edges applied to their source nodes."""

    def __init__(self, topology: nx.DiGraph, channels: int, ops: Sequence[str]):
        super().__init__()
        self.order = _check_topology(topology)
        self.inputs = {j: list(topology.predecessors(j)) for j in self.order}
        self.edges = nn.ModuleDict(
            {f"{i}-{j}": OpChoice({o: _op(o, channels) for o in ops}, _edge_name(i, j)) for i, j in topology.edges}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = {self.order[0]: x}
        for j in self.order[1:]:
            states[j] = sum(self.edges[f"{i}-{j}"](states[i]) for i in self.inputs[j])
        return states[self.order[-1]]


class Reduction(nn.Module):
    """A ResNet basic block with stride 2 that doubles the channels (between cell stacks)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


@register("cell")
class CellNet(Supernet):
    """Stacks of one searched cell with reductions between them (NAS-Bench-201 macro skeleton).

    With the default 4-node cell and 5 ops there are 5^6 = 15,625 architectures.

    Example:
        >>> CellNet(cells_per_stage=1).space.size()
        15625

    Args:
        topology: the cell's DAG (a `networkx.DiGraph`, or a list of ``(i, j)`` edges);
            default: the 4-node NAS-Bench-201 cell.
        ops: the op names allowed on each edge, from ``zero, skip, avg_pool, conv1x1, conv3x3``.
        channels: channels of the first stack (doubled at each reduction).
        cells_per_stage: cells in each of the 3 stacks.
        in_channels: input image channels.
        num_classes: output width.
        image_size: input height and width.
    """

    data_kind = "image"

    def __init__(
        self,
        topology: nx.DiGraph | Sequence[Sequence[int]] | None = None,
        ops: Sequence[str] = OPS,
        channels: int = 16,
        cells_per_stage: int = 1,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 8,
    ):
        if topology is None:
            topology = default_topology()
        elif not isinstance(topology, nx.DiGraph):
            topology = nx.DiGraph([tuple(e) for e in topology])
        bad = [o for o in ops if o not in OPS]
        if bad or not ops:
            raise ValueError(f"the 'ops' parameter of CellNet takes names from {list(OPS)}, got {list(ops)}")
        ops = [o for o in OPS if o in ops]
        _check_topology(topology)
        self.topology = topology
        args = dict(topology=[list(e) for e in topology.edges], ops=list(ops), channels=channels,
                    cells_per_stage=cells_per_stage, in_channels=in_channels, num_classes=num_classes, image_size=image_size)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels)]
        c = channels
        for stage in range(3):
            if stage:
                layers.append(Reduction(c, 2 * c))
                c *= 2
            layers += [Cell(topology, c, ops) for _ in range(cells_per_stage)]
        layers += [nn.BatchNorm2d(c), nn.ReLU(), GlobalAvgPool(), nn.Linear(c, num_classes)]
        super().__init__(nn.Sequential(*layers), (in_channels, image_size, image_size), family="cell", family_args=args)

    def _graph(self, config: Config) -> nx.DiGraph:
        """The cell as a DAG: node states joined through op nodes (zero edges dropped)."""
        graph = nx.DiGraph()
        order = list(nx.topological_sort(self.topology))
        for n in order:
            graph.add_node(f"node{n}", op="input" if n == order[0] else "output" if n == order[-1] else "sum")
        for i, j in self.topology.edges:
            op = config[_edge_name(i, j)]
            if op != "zero":
                graph.add_node(f"{i}-{j}", op=op)
                graph.add_edge(f"node{i}", f"{i}-{j}")
                graph.add_edge(f"{i}-{j}", f"node{j}")
        return graph
