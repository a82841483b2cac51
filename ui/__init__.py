"""The Streamlit oracle UI (``streamlit run ui/app.py``); talks to the services over gRPC only."""
