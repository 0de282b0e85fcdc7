"""A Flask app (Debian's python3-flask): `/` answers plainly; `/hello/NAME` renders a Jinja
template that extends a base template and uses filters."""

from flask import Flask, render_template

app = Flask(__name__)


@app.get("/")
def index():
    return "flask ok\n"


@app.get("/hello/<name>")
def hello(name):
    return render_template("hello.html", name=name, items=["alpha", "beta", "gamma"])


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=18108)
