"""Move every wide weight of ctr version 1 in the stack's parameter store by +0.5: a served
version reads its rows from the store on every request, so its next answers change at once.

    python examples/ctr/update_rows.py      # from the project root, after plinth model params export ctr 1

`plinth model params export ctr 1` writes the trained rows back.
"""

import numpy as np

from platform_cli.paramservice.store import open_store

TABLE = "wide_ids/embeddings"

store = open_store("sqlite:///.plinth/local/params/parameters.sqlite")
[rows] = [t["rows"] for t in store.tables("ctr") if t["version"] == 1 and t["table"] == TABLE]
ids = np.arange(rows)
wide = store.lookup("ctr", 1, {TABLE: ids})[TABLE]
store.update("ctr", 1, TABLE, ids, wide + 0.5)
print(f"updated {rows} rows of {TABLE} for ctr version 1")
