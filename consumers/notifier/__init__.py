"""The email notifier subscriber: mails a question's author when an answer arrives."""
