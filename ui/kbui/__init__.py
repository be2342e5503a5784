"""The pieces of kerasbert's multipage Streamlit app (``streamlit run ui/app.py``).

- :mod:`kbui.core`: the sidebar settings, what the server says about the chosen model and the other
  served models, the page registry (one page per task, from :mod:`kerasbert.contract`) and the
  messages shared by every page (server down, model not served, wrong task, no metadata);
- :mod:`kbui.render`: HTML highlights (entities, answers, WordPieces) and Altair charts;
- :mod:`kbui.tokens`: the WordPiece tokens of an input, from the export's ``tokens`` signature;
- :mod:`kbui.task_pages`: the Classify, NER, Question answering and Embeddings pages;
- :mod:`kbui.server_page`: the Server page (models, versions, signatures, Prometheus figures).

``ui/views/*.py`` are the page scripts ``st.navigation`` runs; each calls one function here.
Nothing imports TensorFlow, so the app starts quickly.
"""
