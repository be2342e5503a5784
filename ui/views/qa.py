"""The qa page (run by st.navigation from ui/app.py)."""

from kbui import task_pages

task_pages.qa_page()
