"""Which earlier steps a templated string reads, as `steps.<id>.<output>` or `steps['<id>']`.

Found on Jinja's own syntax tree, so text that merely looks like a reference (inside a string
literal, say) is not counted. Strings without `steps` never reach the parser.
"""

from __future__ import annotations

from functools import lru_cache

#: The outputs the builder provides for each step at run time.
STEP_OUTPUTS = ("content", "response", "embeddings")


@lru_cache(maxsize=4096)
def referenced_steps(text: str) -> tuple[str, ...]:
    """Step ids referenced in `text`, in order of first appearance; () when the text has none
    or is not valid Jinja (syntax errors are reported by the checks, not here)."""
    if "steps" not in text:
        return ()
    from jinja2 import Environment, TemplateSyntaxError, nodes

    try:
        tree = Environment().parse(text)
    except TemplateSyntaxError:
        return ()
    found: dict[str, None] = {}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if isinstance(target, nodes.Name) and target.name == "steps":
            if isinstance(node, nodes.Getattr):
                found[node.attr] = None
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                found[node.arg.value] = None
    return tuple(found)
