"""`/` answers plainly; `/report/` renders a template and imports its helpers lazily."""

from django.http import HttpResponse
from django.shortcuts import render


def index(request):
    return HttpResponse("django ok\n", content_type="text/plain")


def report(request):
    import statistics  # lazily: not imported at start-up

    from django.contrib.humanize.templatetags.humanize import intcomma  # lazily, too

    values = [1200, 1234, 1268]
    return render(
        request,
        "report.html",
        {"total": intcomma(sum(values)), "mean": intcomma(statistics.mean(values)), "values": values},
    )
