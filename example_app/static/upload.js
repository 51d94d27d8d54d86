// Drag and drop with a progress bar. Without this script the form still works as a plain post.
(function () {
  "use strict";

  document.documentElement.classList.add("has-js");

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("upload-form");
    if (!form || !window.FormData || !window.XMLHttpRequest) return;

    var input = document.getElementById("file");
    var dropzone = document.getElementById("dropzone");
    var errors = document.getElementById("upload-errors");
    var row = document.getElementById("progress-row");
    var bar = document.getElementById("upload-progress");
    var text = document.getElementById("progress-text");
    var button = document.getElementById("upload-button");
    var cards = document.getElementById("cards");
    var empty = document.getElementById("empty-gallery");
    var count = document.getElementById("file-count");
    var flashes = document.getElementById("flashes");
    var maxBytes = parseInt(form.dataset.maxBytes, 10);

    function showErrors(messages) {
      errors.replaceChildren();
      messages.forEach(function (message) {
        var p = document.createElement("p");
        p.className = "error";
        p.textContent = message;
        errors.appendChild(p);
      });
    }

    function flash(message) {
      flashes.replaceChildren();
      var p = document.createElement("p");
      p.className = "flash flash-success";
      p.setAttribute("role", "status");
      p.textContent = message;
      flashes.appendChild(p);
    }

    function setProgress(percent, label) {
      row.hidden = false;
      bar.value = percent;
      text.textContent = label || percent + "%";
    }

    function updateCount() {
      var n = cards.children.length;
      count.textContent = n + (n === 1 ? " file" : " files");
      empty.hidden = n > 0;
    }

    function upload() {
      var file = input.files[0];
      showErrors([]);
      flashes.replaceChildren();
      if (!file) {
        showErrors(["Choose a file to upload."]);
        return;
      }
      if (maxBytes && file.size > maxBytes) {
        showErrors(["“" + file.name + "” is too large. " + form.dataset.tooLarge]);
        return;
      }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) {
          setProgress(Math.min(99, Math.floor((event.loaded / event.total) * 100)));
        }
      });
      xhr.addEventListener("load", function () {
        button.disabled = false;
        var body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        if (body && body.ok) {
          setProgress(100, "Upload complete");
          cards.insertAdjacentHTML("afterbegin", body.card);
          flash(body.message);
          form.reset();
          updateCount();
        } else {
          row.hidden = true;
          showErrors(body && body.errors ? body.errors : ["The upload failed (HTTP " + xhr.status + "). Please try again."]);
        }
      });
      xhr.addEventListener("error", function () {
        button.disabled = false;
        row.hidden = true;
        showErrors(["The upload was interrupted. Check your connection and try again."]);
      });
      button.disabled = true;
      setProgress(0);
      xhr.send(new FormData(form));
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      upload();
    });

    ["dragenter", "dragover"].forEach(function (name) {
      dropzone.addEventListener(name, function (event) {
        event.preventDefault();
        dropzone.classList.add("is-dragover");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      dropzone.addEventListener(name, function () {
        dropzone.classList.remove("is-dragover");
      });
    });
    dropzone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (!event.dataTransfer || !event.dataTransfer.files.length) return;
      input.files = event.dataTransfer.files;
      upload();
    });
  });
})();
