"""The steps as a graph: finding the cycles `validate` reports (Airflow would refuse the DAG)."""

from __future__ import annotations

from collections.abc import Iterator


def cycles(edges: dict[str, list[str]]) -> Iterator[list[str]]:
    """Each cycle of `edges` (node → the nodes it points to) once, as [a, ..., a] in edge order."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    reported: set[frozenset[str]] = set()
    for start in edges:
        if state.get(start):
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(edges[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                cycle = path[path.index(child) :] + [child]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    yield cycle
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(edges[child])))
