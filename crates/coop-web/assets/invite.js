// The invite link carries its token in the fragment (#token=…), which browsers
// never send to a server: copy it into the form. Without JavaScript, the
// person pastes the invite code from the email instead.
(function () {
  var token = new URLSearchParams(location.hash.slice(1)).get("token");
  var field = document.getElementById("f-token");
  if (token && field && !field.value) {
    field.value = token;
    var row = document.getElementById("token-row");
    if (row) row.hidden = true;
    history.replaceState(null, "", location.pathname);
  }
})();
