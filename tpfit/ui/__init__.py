"""`tpfit ui`: the planner as a local web page (needs `pip install 'tpfit[ui]'`: Starlette and uvicorn)."""
