# -- dashboard tests (tests/test_widgets.py, tests/test_dashboard_browser.py) ------------------
# Their fixtures live in tests/dashboard_fixtures.py; this section only registers the marker.


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives the Voila dashboard in headless Debian chromium (Playwright)")
