"""End-to-end tests against a real control plane: a package, so that pytest imports its modules as
``tests.e2e.*`` with the repository root on the path (``from tests.e2e.imagegate import ...``)."""
