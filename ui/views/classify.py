"""The classify page (run by st.navigation from ui/app.py)."""

from kbui import task_pages

task_pages.classify_page()
