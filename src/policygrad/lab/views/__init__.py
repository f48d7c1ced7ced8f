"""The lab's page scripts, run by Streamlit through ``st.navigation`` in ``policygrad/lab/app.py``.

Not named ``pages/``: Streamlit would list a folder of that name by itself as well.
"""
