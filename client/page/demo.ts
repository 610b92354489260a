// The local demo page: reads both tokens from the fragment and offers the two join links,
// in new tabs or in two panes side by side.
const params = new URLSearchParams(location.hash.slice(1));
const requester = params.get("requester");
const consultant = params.get("consultant");
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

if (!requester || !consultant) {
  const e = $("demo-error");
  e.hidden = false;
  e.textContent = "This demo link has no tokens. Run `npm run demo` for a fresh one.";
  $<HTMLButtonElement>("show-panes").disabled = true;
} else {
  const link = (token: string) => `${location.origin}/join#token=${encodeURIComponent(token)}`;
  $<HTMLAnchorElement>("link-requester").href = link(requester);
  $<HTMLAnchorElement>("link-consultant").href = link(consultant);
  $("show-panes").addEventListener("click", () => {
    $<HTMLIFrameElement>("pane-requester").src = link(requester);
    $<HTMLIFrameElement>("pane-consultant").src = link(consultant);
    $("demo-panes").hidden = false;
    $("demo-links").classList.add("compact");
  });
}
