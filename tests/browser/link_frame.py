"""Drive the emulator's Link (the iframe `Plaid.create(...).open()` shows) in any page.

    frame = LinkFrame(page)
    frame.choose_institution("ins_109508", search="platypus")
    frame.log_in("user_good", "pass_good")
    frame.continue_after_success()

or, for the whole happy path in new or update mode, `link_through_success(page)`. Each step
waits (bounded by the page's default timeout) for the pane it acts on.
"""

from __future__ import annotations

from playwright.sync_api import FrameLocator, Locator, Page, expect

IFRAME = 'iframe[data-testid="plaid-link-iframe"]:visible'
DEFAULT_INSTITUTION = "ins_109508"
VIEWS = ("SELECT_INSTITUTION", "CREDENTIAL", "SELECT_ACCOUNT", "CONNECTED", "ERROR")


class LinkFrame:
    """The open Link overlay of `page` (the one visible emulator Link iframe)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.frame: FrameLocator = page.frame_locator(IFRAME)

    def by_id(self, test_id: str) -> Locator:
        return self.frame.get_by_test_id(test_id)

    def view(self, name: str) -> Locator:
        """A pane by Plaid's view name (SELECT_INSTITUTION, CREDENTIAL, ...)."""
        return self.frame.locator(f'[data-view="{name}"]')

    def wait_for_view(self, name: str) -> Locator:
        pane = self.view(name)
        expect(pane).to_be_visible()
        return pane

    def current_view(self, among: tuple[str, ...] = VIEWS) -> str:
        """The pane shown once Link has stopped loading (one of `among`)."""
        settled = self.frame.locator(
            ", ".join(f'[data-view="{name}"]:visible' for name in among)
        ).first
        expect(settled).to_be_visible()
        view = settled.get_attribute("data-view")
        assert view is not None
        return view

    def search(self, query: str) -> None:
        self.wait_for_view("SELECT_INSTITUTION")
        self.by_id("institution-search").fill(query)

    def choose_institution(self, institution_id: str, *, search: str | None = None) -> None:
        if search is not None:
            self.search(search)
        self.wait_for_view("SELECT_INSTITUTION")
        self.by_id(f"institution-{institution_id}").click()
        self.wait_for_view("CREDENTIAL")

    def log_in(self, username: str, password: str) -> None:
        self.wait_for_view("CREDENTIAL")
        self.by_id("username").fill(username)
        self.by_id("password").fill(password)
        self.by_id("submit-credentials").click()

    def select_accounts(self, names: list[str]) -> None:
        self.wait_for_view("SELECT_ACCOUNT")
        for name in names:
            self.by_id(f"account-{name}").check()
        self.by_id("continue-accounts").click()

    def continue_after_success(self) -> None:
        self.wait_for_view("CONNECTED")
        self.by_id("continue-connected").click()
        expect(self.page.locator(IFRAME)).to_have_count(0)

    def close(self) -> None:
        """The close button, from any pane (onExit follows)."""
        self.by_id("link-close").click()
        expect(self.page.locator(IFRAME)).to_have_count(0)

    def exit_from_error(self) -> None:
        self.wait_for_view("ERROR")
        self.by_id("error-exit").click()
        expect(self.page.locator(IFRAME)).to_have_count(0)


def link_through_success(
    page: Page,
    *,
    institution_id: str = DEFAULT_INSTITUTION,
    username: str = "user_good",
    password: str = "pass_good",
    accounts: list[str] | None = None,
) -> None:
    """Take the open Link from its first pane to onSuccess: choose the institution (new mode
    only), log in, select `accounts` by name where the link token asks for a selection (all of
    them when None), and continue."""
    frame = LinkFrame(page)
    if frame.current_view() == "SELECT_INSTITUTION":
        frame.choose_institution(institution_id)
    frame.log_in(username, password)
    view = frame.current_view(among=("SELECT_ACCOUNT", "CONNECTED", "ERROR"))
    if view == "SELECT_ACCOUNT":
        if accounts is None:
            boxes = frame.by_id("account-list").locator("input[type=checkbox]")
            for index in range(boxes.count()):
                boxes.nth(index).check()
            frame.by_id("continue-accounts").click()
        else:
            frame.select_accounts(accounts)
    elif view != "CONNECTED":
        raise AssertionError(f"Link stopped at {view} instead of succeeding")
    frame.continue_after_success()
