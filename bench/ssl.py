"""`python bench/ssl.py ...`: the self-supervised pretraining bench (issue 21), whose code is in
bench/pretraining.py (same arguments; `--help`).

Why two files: Python puts a script's folder first on `sys.path`, so for every script in bench/ an
`import ssl` anywhere (MLflow's HTTP client imports it) finds this file before Python's own `ssl`.
Imported under that name, this file hands over Python's own module, so it shadows nothing.
"""

import sys

if __name__ == "ssl":  # imported as Python's ssl: load the standard library's and step aside
    import importlib.util
    import os
    import sysconfig

    _spec = importlib.util.spec_from_file_location("ssl", os.path.join(sysconfig.get_paths()["stdlib"], "ssl.py"))
    assert _spec is not None and _spec.loader is not None
    _real = importlib.util.module_from_spec(_spec)
    sys.modules["ssl"] = _real
    _spec.loader.exec_module(_real)
elif __name__ == "__main__":
    from pretraining import main

    sys.exit(main())
