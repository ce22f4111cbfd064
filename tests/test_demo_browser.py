"""The demo shop page in real headless Chromium against the real app on
a loopback port: browse, click across roles, filter, log in."""

import shutil
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from serve.app import make_app

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture
async def server(tiny_cfg, tiny_bundle):
    tiny_cfg.serve.bundle = str(tiny_bundle)  # loaded at startup
    server = TestServer(make_app(tiny_cfg), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def page():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent; .ci/run installs Debian's "
                    "chromium package")
    from playwright.async_api import async_playwright
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM),
                                           args=ARGS)
        page = await browser.new_page(viewport={"width": 1400,
                                                "height": 900})
        yield page
        await browser.close()


async def _click_item(page, group: str, gender: str) -> str:
    await page.click(f'button.dept[data-index-group="{group}"] >> nth=0')
    item = page.locator(f'.item[data-gender="{gender}"]').first
    await item.wait_for()
    item_id = await item.get_attribute("data-item-id")
    await item.click()
    await page.wait_for_function(
        "g => document.getElementById('role').textContent"
        ".startsWith(g + '/')", arg=gender)
    return item_id


async def test_demo_follows_the_role_and_logs_in(server, page, tmp_path):
    base = f"http://127.0.0.1:{server.port}"
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(base + "/demo")
    await page.locator("button.dept").first.wait_for()

    await _click_item(page, "Ladieswear", "women")
    assert await page.locator("#role-change").is_hidden()
    recs = page.locator("#recs .rec")
    assert await recs.count() == 20
    assert await page.locator("#recs .rec .reason").first.inner_text()

    await _click_item(page, "Menswear", "men")
    change = await page.locator("#role-change").inner_text()
    assert "women/adult" in change and "men/adult" in change
    trail = await page.locator("#trail li").all_inner_texts()
    assert trail == ["women/adult", "men/adult"]

    await page.select_option("#size", "M")
    await page.select_option("#gender", "men")
    await page.click("#apply-filters")
    await page.wait_for_function(
        "document.getElementById('status').textContent"
        ".startsWith('filter accepted')")

    await page.fill("#user-id", "demo-customer-1")
    await page.click("#login")
    await page.wait_for_function(
        "document.getElementById('who').textContent"
        ".includes('demo-customer-1')")
    assert errors == []

    shot = tmp_path / "demo.png"
    await page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    figures = ROOT / "docs" / "figures"
    if figures.is_dir() and not (figures / "demo.png").exists():
        shutil.copy(shot, figures / "demo.png")  # the committed copy
