"""Print the package dependency graph of neurodeploy (``make deps``).

For each pair of first-party packages, the number of module-level import statements from one to
the other (lazy imports inside functions included), read by grimp, the import-graph library that
import-linter uses. The rule (pyproject.toml, ``[tool.importlinter]``) is that every arrow points
down the order core < models < train < convert < targets; arrows that point up are flagged.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import grimp

ORDER = ["core", "models", "train", "convert", "targets"]


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    graph = grimp.build_graph(*ORDER, include_external_packages=True)
    edges: Counter[tuple[str, str]] = Counter()
    externals: dict[str, set[str]] = {p: set() for p in ORDER}
    for importer in graph.modules:
        top = importer.split(".")[0]
        if top not in ORDER:
            continue
        for imported in graph.find_modules_directly_imported_by(importer):
            dst = imported.split(".")[0]
            if dst in ORDER:
                if dst != top:
                    n = len(graph.get_import_details(importer=importer, imported=imported)) or 1
                    edges[(top, dst)] += n
            elif dst in ("torch", "lava", "nir", "numpy", "h5py"):
                externals[top].add(dst)
    modules = Counter(m.split(".")[0] for m in graph.modules if m.split(".")[0] in ORDER)
    print("package    modules  imports (count of import statements)   external")
    up = 0
    for src in reversed(ORDER):
        outs = [(dst, n) for (s, dst), n in sorted(edges.items()) if s == src]
        arrows = ", ".join(
            f"{dst} ({n})" + (" UP" if ORDER.index(dst) > ORDER.index(src) else "")
            for dst, n in sorted(outs, key=lambda x: -ORDER.index(x[0])))
        up += sum(1 for dst, _ in outs if ORDER.index(dst) > ORDER.index(src))
        ext = ",".join(sorted(externals[src]))
        print(f"{src:<10} {modules[src]:>7}  -> {arrows or '-':<36} {ext}")
    print(f"order: {' < '.join(ORDER)}; arrows pointing up: {up}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
