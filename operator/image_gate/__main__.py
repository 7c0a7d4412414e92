"""``python -m image_gate``: the same as the ``image-gate`` command."""

from image_gate.app.cli import main

raise SystemExit(main())
