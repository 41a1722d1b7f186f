"""The Streamlit script `lead-scoring dashboard` runs: settings, navigation, one page.

Settings come from `load_settings()` (so `LEAD_SCORING_CONFIG` and the path variables apply);
a page is rendered by `ml.dashboard.pages.<page>.render(settings)`.
"""

from __future__ import annotations

import functools

import streamlit as st

from ml.config import Settings, load_settings
from ml.dashboard.pages import PAGES


def main(settings: Settings) -> None:
    st.set_page_config(
        page_title="Lead scoring — monitoring", page_icon=":material/monitoring:", layout="wide"
    )
    pages = [
        st.Page(
            functools.partial(module.render, settings),
            title=title,
            url_path=path,
            icon=icon,
            default=i == 0,
        )
        for i, (title, path, icon, module) in enumerate(PAGES)
    ]
    page = st.navigation(pages)
    st.sidebar.caption(f"Settings: `{settings.source_file}`  \nData: `{settings.paths.data_dir}`")
    page.run()


main(load_settings())
