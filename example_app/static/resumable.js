// The "large file" page: tus-js-client sends the file in chunks and resumes after a drop.
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("large-form");
    if (!form || !window.tus || !window.tus.isSupported) return;

    var input = document.getElementById("large-file");
    var bar = document.getElementById("large-progress");
    var status = document.getElementById("large-status");
    var result = document.getElementById("large-result");
    var link = document.getElementById("large-link");
    var button = document.getElementById("large-button");

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var file = input.files[0];
      if (!file) {
        status.textContent = "Choose a file first.";
        return;
      }
      var savedAt = null;
      button.disabled = true;
      result.hidden = true;
      var upload = new window.tus.Upload(file, {
        endpoint: form.dataset.endpoint,
        chunkSize: parseInt(form.dataset.chunkSize, 10),
        retryDelays: [0, 300, 1000, 3000, 5000],
        metadata: { filename: file.name, filetype: file.type },
        removeFingerprintOnSuccess: true,
        onProgress: function (sent, total) {
          bar.max = total;
          bar.value = sent;
          status.textContent = Math.floor((sent / total) * 100) + "% sent";
        },
        onAfterResponse: function (request, response) {
          // The server names the saved file on the answer to the last PATCH.
          var url = response.getHeader("Flask-Store-File");
          if (url) savedAt = url;
        },
        onError: function (error) {
          button.disabled = false;
          status.textContent = "The upload failed: " + error.message;
        },
        onSuccess: function () {
          button.disabled = false;
          status.textContent = "Uploaded " + file.name + ".";
          if (savedAt) {
            link.href = savedAt;
            link.textContent = file.name;
            result.hidden = false;
          }
        },
      });
      upload.findPreviousUploads().then(function (previous) {
        if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
        upload.start();
      });
    });
  });
})();
