"""The Server page (run by st.navigation from ui/app.py)."""

from kbui import server_page

server_page.server_page()
