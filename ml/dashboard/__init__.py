"""The monitoring dashboard (Streamlit): `lead-scoring dashboard`.

`data` reads the stores read-only (no Streamlit); `pages` renders them; `app` is the script
Streamlit runs. Nothing here writes to a store or opens the DuckDB warehouse.
"""
