"""Python-backend models that ``export.triton`` copies into a repository as ``NAME/1/model.py``.

They run inside tritonserver's Python backend stub (``triton_python_backend_utils`` exists only there),
never imported by the toolkit itself.
"""
