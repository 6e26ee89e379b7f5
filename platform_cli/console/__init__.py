"""The console: the platform in a browser (`plinth console`).

Server-rendered pages (FastAPI + Jinja) over the same core functions the CLI calls: targets for
jobs, flow runs, the model library, the gray-release core, evaluation reports and usage. A
chart library (Chart.js, vendored under static/) draws the figures; there is no client build.
"""
