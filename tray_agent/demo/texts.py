"""English and Indonesian texts for simulated customers: names, messages and bot replies."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

LANGUAGES = ("en", "id")

FIRST_NAMES = {
    "en": (
        "Emma",
        "Liam",
        "Olivia",
        "Noah",
        "Ava",
        "James",
        "Sophia",
        "Lucas",
        "Mia",
        "Henry",
        "Grace",
        "Jack",
    ),
    "id": ("Budi", "Siti", "Agus", "Dewi", "Rizky", "Putri", "Andi", "Ayu", "Fajar", "Nur", "Wahyu", "Indah"),
}
LAST_NAMES = {
    "en": ("Smith", "Johnson", "Brown", "Taylor", "Wilson", "Davies", "Clarke", "Walker"),
    "id": ("Santoso", "Wijaya", "Saputra", "Hidayat", "Kurniawan", "Lestari", "Pratama", "Nugroho"),
}

OPENERS = {
    "en": (
        "Hi, where is my order?",
        "Hello! Do you ship to Canada?",
        "My package arrived damaged, what can I do?",
        "Can I change the size of the shoes I ordered?",
        "Is the blue jacket still in stock?",
        "How long does a refund take?",
        "I was charged twice for the same order",
        "Do you have a store in London?",
    ),
    "id": (
        "Halo, pesanan saya sudah sampai mana ya?",
        "Apakah bisa kirim ke Surabaya?",
        "Paket saya datang dalam keadaan rusak, bagaimana ini?",
        "Kak, ukuran sepatunya bisa ditukar?",
        "Tiket ke Bali untuk tanggal 12 masih ada?",
        "Berapa lama proses refund?",
        "Saya kena tagihan dua kali untuk pesanan yang sama",
        "Bisa bayar pakai transfer bank?",
    ),
}

FOLLOW_UPS = {
    "en": (
        "My order number is 48213.",
        "I ordered it last Tuesday.",
        "OK, and how much is the shipping?",
        "It still says 'processing'.",
        "Can you check again please?",
    ),
    "id": (
        "Nomor pesanan saya 48213.",
        "Saya pesan hari Selasa kemarin.",
        "Oke, ongkirnya berapa kak?",
        "Statusnya masih 'diproses'.",
        "Tolong dicek lagi ya kak.",
    ),
}

HUMAN_REQUESTS = {
    "en": (
        "I want to talk to a real person",
        "Can I speak to a human agent please?",
        "This bot is not helping, get me an agent",
        "Please connect me with customer service",
    ),
    "id": (
        "Saya mau bicara dengan admin",
        "Bisa sambungkan ke CS manusia?",
        "Botnya tidak membantu, tolong sambungkan ke agen",
        "Kak, saya mau ngobrol sama orang langsung",
    ),
}

ANSWERS_TO_AGENT = {
    "en": (
        "Thanks, that helps.",
        "Yes, that's right.",
        "OK, I'll wait.",
        "Great, thank you!",
        "No, the other one.",
    ),
    "id": (
        "Terima kasih kak.",
        "Iya betul.",
        "Oke saya tunggu.",
        "Mantap, makasih ya!",
        "Bukan, yang satunya.",
    ),
}

GOODBYES = {
    "en": ("Thanks, bye!", "That's all, thank you.", "Have a nice day!"),
    "id": ("Makasih kak, sampai jumpa!", "Sudah itu saja, terima kasih.", "Oke kak, makasih banyak."),
}

BOT_REPLIES = {
    "en": (
        "Thanks for your message! Let me look into that for you.",
        "Your order is on its way and should arrive in 2-3 business days.",
        "Refunds usually take 5-7 business days after we receive the item.",
        "Yes, we ship worldwide. Shipping costs depend on the destination.",
        "You can exchange items within 30 days of delivery.",
    ),
    "id": (
        "Terima kasih atas pesannya! Sebentar ya, kami cek dulu.",
        "Pesanan Anda sedang dikirim dan akan tiba dalam 2-3 hari kerja.",
        "Proses refund biasanya 5-7 hari kerja setelah barang kami terima.",
        "Bisa kak, kami kirim ke seluruh Indonesia. Ongkir tergantung tujuan.",
        "Barang bisa ditukar dalam 30 hari setelah diterima.",
    ),
}


def customer_name(language: str, index: int) -> str:
    """A deterministic full name for the ``index``-th customer speaking ``language``."""
    firsts, lasts = FIRST_NAMES[language], LAST_NAMES[language]
    return f"{firsts[index % len(firsts)]} {lasts[(index // len(firsts)) % len(lasts)]}"
