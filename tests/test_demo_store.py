"""The demo store (/demo/, issue 15 item 2) served by `kairos serve` with its
demo (the README's first command): browsing and adding to cart through the
SDK reach the console's profile view within a second, the abandoned-cart
journey created at start nudges the visitor in the page, and the store and
its side panel pass axe-core. Screenshots go to .work/artifacts/."""

import time

import pytest
import requests

from conftest import Kairos
from console_support import ConsoleBrowser, ensure_browser_tools

# The demo journey's wait (crates/kairos/src/demo.rs, DEMO_CART_WAIT) plus
# delivery slack.
NUDGE_WAIT_SECONDS = 15 + 15


@pytest.fixture(scope="module")
def demo_kairos(tmp_path_factory):
    ensure_browser_tools()
    server = Kairos(tmp_path_factory.mktemp("demo") / "data", demo=True).start()
    yield server
    server.stop()


@pytest.fixture
def browser(demo_kairos):
    b = ConsoleBrowser(demo_kairos)
    yield b
    b.close()


def open_store(browser, tab="store"):
    browser.goto("/demo/", tab=tab)
    browser.do("wait", tab=tab, selector="li.card")
    assert browser.wait_js("window.kairos && !!window.kairos.writeKey", tab=tab), browser.diagnostics()
    return browser.js("kairos.user().anonymousId()", tab=tab)


def test_the_demo_is_created_at_start(demo_kairos):
    config = requests.get(demo_kairos.base_url + "/demo/config.json", timeout=10).json()
    sources = demo_kairos.admin("GET", "/v1/admin/sources").json()["sources"]
    assert config["write_key"] == next(s["write_key"] for s in sources if s["name"] == "demo")
    journeys = demo_kairos.admin("GET", "/v1/journeys").json()["journeys"]
    assert [j["trigger"] for j in journeys if j["name"] == "demo: abandoned cart"] == [
        {"event": "Product Added", "not_followed_by": "Order Completed", "within": "15s", "key": "cart_id"}]
    assert requests.get(demo_kairos.base_url + "/demo", allow_redirects=False).headers["Location"] == "/demo/"
    models = demo_kairos.admin("GET", "/v1/models").json()["models"]
    assert [(m["name"], m["mode"]) for m in models] == [("demo_purchase_propensity", "active")]
    audience = demo_kairos.admin("GET", "/v1/audiences/demo: likely buyers").json()
    assert audience["definition"] == 'score("demo_purchase_propensity") > 0.5'


def test_a_restart_keeps_the_demo_as_it_is(tmp_path):
    server = Kairos(tmp_path / "data", demo=True).start()
    try:
        before = {path: server.admin("GET", path).json() for path in ("/v1/models", "/v1/journeys", "/v1/destinations")}
        server.restart()
        after = {path: server.admin("GET", path).json() for path in before}
        assert after == before  # nothing added twice (a model's POST would add a version)
    finally:
        server.stop()


def test_browsing_and_adding_to_cart_show_in_the_console_profile_within_a_second(demo_kairos, browser):
    browser.login(tab="console")
    anonymous_id = open_store(browser)
    browser.check_page("demo-store-home", tab="store")
    browser.do("click", tab="store", selector="a[href='#product/sku-100']")
    browser.do("wait", tab="store", selector="#add")
    browser.check_page("demo-store-product", tab="store")
    # The console's profile view of this visitor, open in another tab.
    browser.goto(f"/#/profiles/anonymous_id%3A{anonymous_id}", tab="console")
    browser.do("wait", tab="console", selector="#profile-title")
    clicked = time.time()
    browser.do("click", tab="store", selector="#add")
    timeline = "document.querySelector('#profile-view') && document.querySelector('#profile-view').innerText"
    assert browser.wait_js(f"({timeline} || '').includes('Product Added')", timeout=5, tab="console"), \
        browser.do("text", tab="console", selector="#profile-view")
    seen_after = time.time() - clicked
    print(f"Product Added shown in the console {seen_after:.3f}s after the click")
    assert seen_after < 1.0, f"the console showed Product Added {seen_after:.2f}s after the click"
    text = browser.do("text", tab="console", selector="#profile-view")
    assert "Product Viewed" in text and "sku-100" in text, text
    browser.check_page("console-profile-of-a-demo-visitor", tab="console")
    # The store's own side panel (the console's session is this browser's) shows it too.
    assert browser.wait_js("document.querySelector('#panel-events').innerText.includes('Product Added')", tab="store")
    # The model scores the session as it goes: one view and one add make
    # a likely buyer, which the panel shows (audience entered, score).
    assert browser.wait_js("document.querySelector('#panel-audiences').innerText.includes('demo: likely buyers')",
                           timeout=5, tab="store"), browser.do("text", tab="store", selector="#panel-body")
    assert "demo_purchase_propensity: 0.57" in browser.do("text", tab="store", selector="#panel-body")
    browser.check_page("demo-store-panel", tab="store")
    # Search goes through the SDK as well.
    browser.do("click", tab="store", selector="main a[href='#']")
    browser.do("fill", tab="store", selector="#q", value="socks")
    browser.do("press", tab="store", key="Enter")
    browser.do("wait", tab="store", selector="li.card")
    assert browser.wait_js(f"({timeline} || '').includes('Products Searched')", timeout=3, tab="console")
    events = demo_kairos.admin("GET", f"/v1/profiles/anonymous_id:{anonymous_id}/events?limit=100").json()["events"]
    names = {e.get("event") for e in events}
    assert {"Product Viewed", "Product Added", "Products Searched"} <= names, names
    assert any(e["type"] == "page" for e in events)
    added = next(e for e in events if e.get("event") == "Product Added")
    assert added["properties"]["product_id"] == "sku-100" and added["properties"]["cart_id"].startswith("cart-")
    assert added["context"]["library"]["name"] == "kairos.js"


def test_an_abandoned_cart_nudge_arrives_as_an_in_app_message(demo_kairos, browser):
    open_store(browser)
    browser.do("click", tab="store", selector="button[data-add='sku-210']")
    browser.goto("/demo/#cart", tab="store")
    browser.do("wait", tab="store", selector="#checkout")
    browser.check_page("demo-store-cart", tab="store")
    browser.do("wait", tab="store", selector="[role=dialog]", timeout=NUDGE_WAIT_SECONDS * 1000)
    nudge = browser.do("text", tab="store", selector="[role=dialog]")
    assert "Still thinking about the Down Parka, Forest?" in nudge, nudge
    browser.check_page("demo-store-nudge", tab="store")


def test_checking_out_in_time_sends_no_nudge_and_the_panel_asks_for_a_console_login(demo_kairos, browser):
    anonymous_id = open_store(browser)
    assert browser.wait_js("document.querySelector('#panel-body').innerText.includes('Log in to the')", tab="store")
    browser.do("click", tab="store", selector="button[data-add='sku-300']")
    browser.goto("/demo/#cart", tab="store")
    browser.do("click", tab="store", selector="#checkout")
    browser.do("wait", tab="store", selector="text=is confirmed")
    browser.check_page("demo-store-order", tab="store")
    deadline = time.time() + 20
    while time.time() < deadline:
        r = demo_kairos.admin("GET", f"/v1/profiles/anonymous_id:{anonymous_id}/events?limit=50")
        if r.status_code == 200 and any(e.get("event") == "Order Completed" for e in r.json()["events"]):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("Order Completed never stored")
    time.sleep(17)  # past the journey's 15 s wait
    assert browser.js("!document.querySelector('[role=dialog]')", tab="store")
    deliveries = demo_kairos.admin("GET", f"/v1/profiles/anonymous_id:{anonymous_id}/deliveries").json()
    assert not deliveries.get("deliveries"), deliveries


def test_logging_in_identifies_the_visitor(demo_kairos, browser):
    browser.login(tab="console")
    anonymous_id = open_store(browser)
    browser.goto("/demo/#login", tab="store")
    browser.do("fill", tab="store", selector="#email", value="Demo.Visitor@Example.org")
    browser.do("fill", tab="store", selector="#name", value="Demo Visitor")
    browser.check_page("demo-store-login", tab="store")
    browser.do("click", tab="store", selector="form button[type=submit]")
    deadline = time.time() + 10
    while time.time() < deadline:
        r = demo_kairos.admin("GET", "/v1/profiles/user_id:demo.visitor@example.org")
        if r.status_code == 200:
            break
        time.sleep(0.2)
    profile = r.json()
    ids = {f"{i['type']}:{i['value']}" for i in profile["identities"]}
    assert {"user_id:demo.visitor@example.org", f"anonymous_id:{anonymous_id}"} <= ids, ids
    assert profile["traits"]["name"] == "Demo Visitor"
    assert browser.wait_js("document.querySelector('#panel-state').innerText.includes('Profile')", tab="store")


def test_the_picked_for_you_slot_changes_with_the_cart(demo_kairos, browser):
    """The demo's personalized slot (issue 15 item 2): a welcome at first;
    once the visitor adds to the cart, Kairos' next decision is the
    free-shipping offer, filled in without a reload; views are reported."""
    open_store(browser)
    slot = "[data-kairos-placement=demo_hero] .kairos-offer-title"
    browser.do("wait", tab="store", selector=slot)
    assert browser.do("text", tab="store", selector=slot) == "Welcome to Trailhead"
    browser.do("click", tab="store", selector="button[data-add='sku-210']")
    deadline = time.time() + 10
    while time.time() < deadline:
        title = browser.do("text", tab="store", selector=slot)
        if title == "Free shipping on your cart today":
            break
        time.sleep(0.2)
    assert title == "Free shipping on your cart today", title
    r = demo_kairos.admin("GET", "/v1/offers/demo: free shipping")
    assert r.status_code == 200, r.text


def test_the_catalog_matches_the_store_and_related_items_follow_the_product_viewed(demo_kairos, browser):
    """Issue 16 in the demo (seed 001 §4d): the store's products are
    Kairos' catalog, and the "Goes well with it" slot follows the product
    the visitor looks at — hiking boots bring hiking socks and a rain
    jacket (what earlier visitors viewed next), without a reload."""
    open_store(browser)
    cards = browser.js("[...document.querySelectorAll('li.card')].map((c) => [c.dataset.kairosProduct, "
                       "c.dataset.kairosProductName, Number(c.dataset.kairosProductPrice), c.dataset.kairosProductCategory])",
                       tab="store")
    catalog = demo_kairos.admin("GET", "/v1/items", params={"limit": 1000}).json()["items"]
    assert len(cards) == 50 and sorted(cards) == sorted([i["id"], i["name"], i["price"], i["category"]] for i in catalog)
    browser.do("click", tab="store", selector="a[href='#product/sku-120']")
    body = "[data-kairos-placement=demo_related] .kairos-offer-body"
    # A slot decided before the view was acknowledged shows what is popular
    # (the boots among them); the one decided after it follows the view.
    def follows_the_view(text):
        return "Hiking Socks, Forest" in text and "Rain Jacket, Forest" in text and "Hiking Boots, Forest" not in text

    deadline, text = time.time() + 10, ""
    while time.time() < deadline:
        text = browser.js(f"document.querySelector('{body}')?.innerText || ''", tab="store")
        if follows_the_view(text):
            break
        time.sleep(0.2)
    assert follows_the_view(text), text


def test_the_sdk_widget_links_to_what_visitors_of_this_product_also_viewed(demo_kairos, browser):
    """The browser SDK's recommendations widget on the product page
    (`data-kairos-recommendations="viewed_together"`): links to the items
    (text and attributes only), and a click is reported as `Product
    Clicked`, which Kairos learns from."""
    anonymous_id = open_store(browser)
    browser.do("click", tab="store", selector="a[href='#product/sku-110']")
    link = "[data-kairos-recommendations] a[data-kairos-item='sku-310']"
    browser.do("wait", tab="store", selector=link)
    assert browser.js(f"document.querySelector(\"{link}\").getAttribute('href')", tab="store") == "/demo/#product/sku-310"
    names = browser.js("[...document.querySelectorAll('[data-kairos-recommendations] .kairos-rec-name')].map((e) => e.textContent)",
                       tab="store")
    assert names[:2] == ["Running Socks, Forest", "Cap, Forest"], names
    assert browser.js("document.querySelector('[data-kairos-recommendations] script, [data-kairos-recommendations] [onclick]')",
                      tab="store") is None
    browser.do("click", tab="store", selector=link)
    deadline, events = time.time() + 10, []
    while time.time() < deadline:
        r = demo_kairos.admin("GET", f"/v1/profiles/anonymous_id:{anonymous_id}/events", params={"limit": 20})
        events = [(e.get("event"), (e.get("properties") or {}).get("product_id")) for e in r.json().get("events", [])]
        if ("Product Clicked", "sku-310") in events:
            break
        time.sleep(0.2)
    assert ("Product Clicked", "sku-310") in events, events
