"""One module per dashboard page; each exposes `render(settings)` and shows an empty state
that names the command to run when its store has nothing yet."""

from ml.dashboard.pages import drift, online, overview, performance, scores, serving

# (title, url path, icon, module): the order of the navigation
PAGES = [
    ("Overview", "overview", ":material/dashboard:", overview),
    ("Scores", "scores", ":material/leaderboard:", scores),
    ("Drift", "drift", ":material/ssid_chart:", drift),
    ("Performance and business", "performance", ":material/insights:", performance),
    ("Online tests", "online-tests", ":material/science:", online),
    ("Serving", "serving", ":material/speed:", serving),
]
