"""`infermon demo`: `infermon up` with a sample model, its logger and traffic that drifts.

It assembles everything (the command is `infermon.demo.command`): the stack of `infermon up`,
a wine classifier served in this process (`model_server`, trained at start on scikit-learn's
data set, `data`) behind the logger, and a traffic generator (`traffic`) whose data drift
halfway through, with feedback labels, so that the dashboard shows drift and accuracy within a
minute. scikit-learn is the `demo` extra.
"""
