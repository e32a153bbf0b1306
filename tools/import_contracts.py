"""An import-linter contract the built-in ones do not state: no module of a package imports
itself, through any chain of imports (function-local and `TYPE_CHECKING` imports included).

`acyclic_siblings` checks whole packages against each other, which is stronger than the
layout wants: a domain package holds both its services and its router, and routers may import
the FastAPI wiring that services may not. This contract checks the modules themselves.
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class AcyclicModulesContract(Contract):
    """Kept when no module under `package` reaches itself through its imports."""

    type_name = "acyclic_modules"

    package = fields.StringField()

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        root = str(self.package)
        modules = {root} | graph.find_descendants(root)
        output.verbose_print(verbose, f"Looking for import circles among {len(modules)} modules.")
        cycles: set[tuple[str, ...]] = set()
        for module in sorted(modules):
            for imported in graph.find_modules_directly_imported_by(module) & modules:
                chain = graph.find_shortest_chain(imported, module, as_packages=False)
                if chain:
                    cycles.add(_from_smallest((module, *chain[:-1])))
        return ContractCheck(kept=not cycles, warnings=None, metadata={"cycles": sorted(cycles)})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error(" -> ".join((*cycle, cycle[0])), bold=False)
            output.new_line()


def _from_smallest(cycle: tuple[str, ...]) -> tuple[str, ...]:
    """The cycle rotated to start at its smallest module, so each is reported once."""
    start = cycle.index(min(cycle))
    return cycle[start:] + cycle[:start]
