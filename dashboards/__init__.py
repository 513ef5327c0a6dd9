"""The i1lab dashboard: a read-only web app (Dash + Plotly) over the registry.

``dashboards.data`` reads the registry (opened read-only) and builds what the pages show;
``dashboards.figures`` turns that into Plotly figures; ``dashboards.app`` is the Dash app.
Start it with ``i1lab dashboard``.
"""
