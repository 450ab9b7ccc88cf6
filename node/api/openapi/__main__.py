"""``python -m node.api.openapi [--check]``: write (or check) node/api/openapi.json."""

from node.api.openapi.build import main

raise SystemExit(main())
