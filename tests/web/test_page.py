"""The web page at `/`, in Chromium: drag-and-drop uploads followed to `completed`, rejected
rows shown and downloaded, API errors shown, the API key asked for, the import list."""

import csv
import io
import json
import re
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, expect

from conftest import ROOT, eventually

PEOPLE = "id,name,born\n1,Ann,2000-01-01\n2,,2001-01-01\n3,Zoë,1999-12-31\nx,Bob,2001-02-03\n"
SHOTS = ROOT / "target" / "web"


def drop(page: Page, name: str, text: str, *more: tuple[str, str]) -> None:
    """Drops files on the drop zone, as a drag from the desktop does."""
    dt = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const [name, text] of files) {
                dt.items.add(new File([text], name, { type: "text/csv" }));
            }
            return dt;
        }""",
        [[name, text], *more],
    )
    page.dispatch_event("#drop", "dragenter", {"dataTransfer": dt})
    page.dispatch_event("#drop", "drop", {"dataTransfer": dt})


def post(service, table: str, body: str, key: str | None = None) -> dict:
    req = urllib.request.Request(
        f"{service.url}/v1/imports?table={table}", data=body.encode(), method="POST",
        headers={"Content-Type": "text/csv", **({"Authorization": f"Bearer {key}"} if key else {})},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def test_a_dropped_file_lands_and_its_rejected_rows_can_be_read_and_downloaded(page, service):
    page.goto(service.url)
    expect(page.locator("#table-list option[value='public.people']")).to_have_count(1)
    page.fill("#table", "people")
    expect(page.locator("#table-columns")).to_contain_text("id integer (required)")
    drop(page, "people.csv", PEOPLE)
    expect(page.locator("#chosen")).to_contain_text("people.csv")
    page.click("#upload-button")

    card = page.locator("#uploads .card").first
    expect(card.locator(".status")).to_contain_text("completed", timeout=30_000)
    expect(card).to_contain_text("2 written, 2 rejected of 4")
    rows = service.query("SELECT id, name, born::text FROM people ORDER BY id")
    assert rows == [(1, "Ann", "2000-01-01"), (3, "Zoë", "1999-12-31")]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "upload.png", full_page=True)

    card.get_by_role("link", name="details").click()
    expect(page.locator("#view-import")).to_be_visible()
    rejected = page.locator("#rejected tbody tr")
    expect(rejected).to_have_count(2)
    expect(rejected.nth(0)).to_contain_text("not-null constraint")
    expect(rejected.nth(0).locator("td").first).to_have_text("3")
    expect(rejected.nth(1)).to_contain_text('invalid input syntax for type integer: "x"')
    expect(rejected.nth(1).locator("td").first).to_have_text("5")

    with page.expect_download() as d:
        page.click("#download")
    got = list(csv.reader(io.StringIO(Path(d.value.path()).read_text())))
    assert got[0] == ["line", "stage", "reason", "raw", "id", "name", "born"]
    assert [r[0] for r in got[1:]] == ["3", "5"]
    assert got[2][4:] == ["x", "Bob", "2001-02-03"]

    with page.expect_download() as d:
        page.click("#download-reupload")
    assert Path(d.value.path()).read_text() == "id,name,born\n2,,2001-01-01\nx,Bob,2001-02-03\n"


def test_an_upload_the_api_refuses_shows_its_message(page, service):
    page.goto(service.url)
    page.fill("#table", "no_such_table")
    drop(page, "people.csv", PEOPLE)
    page.click("#upload-button")
    card = page.locator("#uploads .card").first
    expect(card.locator(".error")).to_contain_text('no table "no_such_table" that csvbus may write to')
    expect(card.locator(".status")).to_have_text("refused")

    page.fill("#table", "people")
    drop(page, "bad.csv", "id,nickname\n1,x\n")
    page.click("#upload-button")
    expect(page.locator("#uploads .card").first.locator(".error")).to_contain_text(
        re.compile(r"nickname.*\(line 1\)")
    )
    assert service.query("SELECT count(*) FROM people") == [(0,)]


def test_with_keys_the_page_asks_for_one_and_keeps_it_for_the_session(page, keyed_service):
    page.goto(keyed_service.url)
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    page.fill("#key-input", "wrong")
    page.keyboard.press("Enter")
    expect(page.locator("#key-error")).to_have_text("That key was refused.")
    page.fill("#key-input", "s3cret-key")
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#table-list option[value='public.people']")).to_have_count(1)

    page.reload()
    expect(page.locator("#table-list option[value='public.people']")).to_have_count(1)
    expect(dialog).to_be_hidden()
    page.fill("#table", "people")
    drop(page, "people.csv", "id,name\n7,Kim\n")
    page.click("#upload-button")
    expect(page.locator("#uploads .card .status").first).to_contain_text("completed", timeout=30_000)
    assert keyed_service.query("SELECT id, name FROM people") == [(7, "Kim")]


def test_the_import_list_filters_and_pages(page, service):
    for i in range(27):
        post(service, "cities", f"name,country\nCity{i},X\n")
    post(service, "people", "id,name\n1,Ann\n")
    page.goto(service.url + "/#/imports")
    table = page.locator("#imports tbody tr")
    expect(table).to_have_count(25)
    expect(table.first).to_contain_text("public.people")
    page.click("#older")
    expect(table).to_have_count(28)
    expect(page.locator("#older")).to_be_hidden()

    page.fill("#filter-table", "people")
    page.click("#filter button[type=submit]")
    expect(table).to_have_count(1)
    page.fill("#filter-table", "")
    page.select_option("#filter-outcome", "failed")
    page.click("#filter button[type=submit]")
    expect(table).to_have_count(0)


WARN = "rgb(138, 90, 0)"  # --warn in app.css
OK = "rgb(27, 122, 58)"  # --ok


def test_every_row_refused_is_a_warning_and_the_file_is_listed_under_its_name(page, service):
    page.goto(service.url)
    page.fill("#table", "people")
    # Postgres refuses both rows (not integers): completed, but nothing landed.
    drop(page, "all-refused.csv", "id,name\nx,Ann\ny,Bob\n")
    page.click("#upload-button")
    status = page.locator("#uploads .card .status").first
    expect(status).to_contain_text("completed with 2 rejected", timeout=30_000)
    expect(status).to_have_class(re.compile(r"\bcompleted_with_rejections\b"))
    assert status.evaluate("e => getComputedStyle(e).color") == WARN
    assert service.query("SELECT count(*) FROM people") == [(0,)]

    post(service, "cities", "name,country\nLyon,FR\n")  # a clean import, sent without a name
    eventually("the clean import to complete", lambda: service.query(
        "SELECT status FROM csvbus.imports WHERE target_table = 'cities'") == [("completed",)])
    page.goto(service.url + "/#/imports")
    rows = page.locator("#imports tbody tr")
    expect(rows).to_have_count(2)
    refused = rows.filter(has_text="all-refused.csv")
    expect(refused.locator(".status")).to_have_text("completed with 2 rejected")
    assert refused.locator(".status").evaluate("e => getComputedStyle(e).color") == WARN
    clean = rows.filter(has_text="public.cities")
    expect(clean.locator(".status")).to_have_text("completed")
    assert clean.locator(".status").evaluate("e => getComputedStyle(e).color") == OK
    expect(page.locator("#imports-totals")).to_contain_text("2 imports shown")

    page.select_option("#filter-outcome", "rejected")
    page.click("#filter button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".source")).to_have_text("all-refused.csv")
    expect(page.locator("#imports-totals")).to_have_text(
        "1 imports shown: 0 rows written, 2 rejected")
    page.select_option("#filter-outcome", "")
    page.fill("#filter-source", "ALL-REF")
    page.click("#filter button[type=submit]")
    expect(rows).to_have_count(1)
    rows.first.locator("a").click()
    expect(page.locator("#import-facts")).to_contain_text("all-refused.csv")
    expect(page.locator("#import-facts .status")).to_have_text("completed with 2 rejected")


def test_keyboard_only_on_a_phone_sized_screen(page, service):
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(service.url)
    expect(page.locator("#table-list option")).to_have_count(2)
    wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0, f"the page is {wide}px wider than a phone screen"
    # Tab from the top of the page to the file input; files come from the system's chooser.
    eventually("focus on the file input", lambda: (
        page.keyboard.press("Tab"), page.evaluate("document.activeElement.id") == "files")[1],
        timeout=10)
    page.set_input_files("#files", files=[{
        "name": "cities.csv", "mimeType": "text/csv", "buffer": b"name,country\nLyon,FR\n"}])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "table"
    page.keyboard.type("cities")
    page.keyboard.press("Enter")
    expect(page.locator("#uploads .card .status").first).to_contain_text("completed", timeout=30_000)
    assert service.query("SELECT name, country FROM cities") == [("Lyon", "FR")]


def test_a_messy_file_with_the_page_options_creates_its_table(page, service):
    page.goto(service.url)
    page.fill("#table", "sales")
    page.select_option("#encoding", "windows-1252")
    page.check("#create")
    body = "Exported 2026-11-25\r\nRegion;Amount;Paid On\r\nZürich;12.50;2026-01-02\r\n"
    dt = page.evaluate_handle(
        """(bytes) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], "sales.csv", { type: "text/csv" }));
            return dt;
        }""",
        list(body.encode("cp1252")),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": dt})
    page.click("#upload-button")
    card = page.locator("#uploads .card").first
    expect(card.locator(".status")).to_contain_text("completed", timeout=30_000)
    expect(card.locator(".read-as")).to_contain_text("delimiter ; (detected)")
    expect(card.locator(".read-as")).to_contain_text("1 line(s) before the header skipped")
    expect(card.locator(".read-as")).to_contain_text(
        'created: CREATE TABLE "public"."sales" ("region" text, "amount" numeric, "paid_on" date)'
    )
    assert service.query("SELECT region, amount::text, paid_on::text FROM sales") == [
        ("Zürich", "12.50", "2026-01-02")
    ]


def test_a_column_a_late_value_widened_is_said(page, service):
    page.goto(service.url)
    page.fill("#table", "late")
    page.check("#create")
    rows = "".join(f"{i},{'n/a' if i == 2050 else i}\n" for i in range(1, 2101))
    drop(page, "late.csv", "id,n\n" + rows)
    page.click("#upload-button")
    card = page.locator("#uploads .card").first
    expect(card.locator(".status")).to_contain_text("completed", timeout=30_000)
    expect(card.locator(".read-as")).to_contain_text(
        'widened: ALTER TABLE "public"."late" ALTER COLUMN "n" TYPE text'
    )
    assert service.query("SELECT n FROM late WHERE id = 2050") == [("n/a",)]


def test_several_dropped_files_are_uploaded_one_after_the_other(page, service):
    page.goto(service.url)
    page.fill("#table", "cities")
    drop(page, "a.csv", "name,country\nLyon,FR\n", ("b.csv", "name;country\nOslo;NO\nBern;CH\n"))
    expect(page.locator("#chosen li")).to_have_count(2)
    page.click("#upload-button")
    cards = page.locator("#uploads .card")
    expect(cards).to_have_count(2)
    for i in range(2):
        expect(cards.nth(i).locator(".status")).to_contain_text("completed", timeout=30_000)
    expect(cards.nth(1).locator(".read-as")).to_contain_text("delimiter ; (detected)")
    assert service.query("SELECT name, country FROM cities ORDER BY name") == [
        ("Bern", "CH"), ("Lyon", "FR"), ("Oslo", "NO")
    ]


def test_a_dropped_file_is_previewed_before_it_is_sent_and_nothing_is_stored(page, service):
    page.goto(service.url)
    expect(page.locator("#table-list option[value='public.people']")).to_have_count(1)
    page.fill("#table", "people")
    drop(page, "day-first.csv", "id;name;born\n1;Ann;31/12/2000\n2;Bob;x;y\n3;;01/02/2003\n")
    preview = page.locator("#preview")
    expect(preview).to_contain_text("nothing stored yet")
    rows = preview.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("2000-12-31")
    expect(rows.nth(1)).to_contain_text("rejected: expected 3 fields, found 4")
    expect(rows.nth(2)).to_contain_text("2003-02-01")
    expect(preview.locator(".read-as")).to_contain_text("delimiter ;")
    assert service.query("SELECT count(*) FROM csvbus.imports") == [(0,)]
    assert service.query("SELECT count(*) FROM people") == [(0,)]
    # Options change the preview: a table that does not exist is said so before sending.
    page.fill("#table", "nowhere")
    expect(preview).to_contain_text("Preview:")


def test_an_imports_page_shows_its_webhook_delivery(page, hooked_service):
    page.goto(hooked_service.url)
    page.fill("#table", "people")
    expect(page.locator("#table-columns")).to_contain_text("id integer (required)")
    drop(page, "people.csv", "id,name,born\n1,Ann,2000-01-01\n")
    page.click("#upload-button")
    card = page.locator("#uploads .card").first
    expect(card.locator(".status")).to_contain_text("completed", timeout=30_000)
    # The receiver refuses the first attempt and takes the second.
    eventually("the second attempt", lambda: len(hooked_service.receiver.events) >= 2)
    assert [e for e, _ in hooked_service.receiver.events] == ["import.completed"] * 2
    delivered = "SELECT count(*) FROM csvbus.deliveries WHERE state = 'delivered'"
    eventually("the delivery recorded", lambda: hooked_service.query(delivered) == [(1,)])
    card.get_by_role("link", name="details").click()
    facts = page.locator("#import-facts")
    expect(facts).to_contain_text("Webhook")
    expect(facts).to_contain_text("import.completed delivered (2 attempts")
