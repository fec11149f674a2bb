"""Hand-written (subject, relation, object) tables: the raw material of the book's facts file.

Each :class:`Relation` holds a prompt template in CounterFact's style (``"{}"`` marks the subject and the object
comes next), two paraphrase templates, a few generation templates (for fluency and consistency), a statement
template used to write the reference text that replaces CounterFact's Wikipedia snippets, and its
(subject, object) pairs. Relation ids follow Wikidata, as CounterFact's do (``P36`` capital, ``P17`` country …).

The tables list *candidates*. Which of them the model knows is decided by code
(:func:`locedit.data.build_facts`, run by ``scripts/check_known_facts.py``), never by hand.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Relation:
    """One relation: how to ask about it, and the (subject, object) pairs the book offers for it."""

    relation_id: str
    name: str
    prompt: str  # e.g. "The capital of {} is"; the object follows with a leading space
    paraphrases: tuple[str, str]
    generation: tuple[str, ...]  # open-ended prompts about the subject (CounterFact's generation_prompts)
    statement: str  # "{subject} … {object}." written out as a reference sentence
    object_type: str  # objects of the same type may stand in for one another (counterfactual targets)
    pairs: tuple[tuple[str, str], ...]

    def objects(self) -> list[str]:
        """This relation's distinct objects, in order of first appearance."""
        return list(dict.fromkeys(o for _, o in self.pairs))


def _pairs(table: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """``{"Paris": "Eiffel Tower, Louvre"}`` → ((“Eiffel Tower”, “Paris”), (“Louvre”, “Paris”)), keyed by object."""
    return tuple((s.strip(), obj) for obj, subjects in table.items() for s in subjects.split(";") if s.strip())


_COUNTRY_CITIES = {
    "France": "Lyon; Marseille; Nice; Bordeaux; Toulouse; Strasbourg; Paris",
    "Germany": "Munich; Hamburg; Frankfurt; Cologne; Berlin; Stuttgart; Dresden",
    "Italy": "Milan; Naples; Venice; Florence; Rome; Turin; Bologna",
    "Spain": "Barcelona; Madrid; Seville; Valencia; Bilbao; Granada",
    "Japan": "Osaka; Kyoto; Tokyo; Yokohama; Hiroshima; Nagoya",
    "Canada": "Toronto; Vancouver; Montreal; Ottawa; Calgary",
    "Australia": "Sydney; Melbourne; Brisbane; Perth; Adelaide",
    "India": "Mumbai; Delhi; Bangalore; Kolkata; Chennai",
    "China": "Shanghai; Beijing; Shenzhen; Guangzhou; Wuhan",
    "Russia": "Moscow; Saint Petersburg; Novosibirsk; Kazan",
    "Brazil": "Rio de Janeiro; São Paulo; Brasília; Salvador",
    "Turkey": "Istanbul; Ankara; Izmir; Antalya",
    "Egypt": "Cairo; Alexandria; Luxor; Giza",
    "England": "Manchester; Liverpool; Birmingham; London; Oxford; Cambridge",
    "Portugal": "Lisbon; Porto",
    "Greece": "Athens; Thessaloniki",
    "Austria": "Vienna; Salzburg; Innsbruck",
    "Switzerland": "Zurich; Geneva; Bern; Basel",
    "Poland": "Warsaw; Krakow; Gdansk",
    "Mexico": "Mexico City; Guadalajara; Cancun; Monterrey",
    "Argentina": "Buenos Aires; Córdoba",
    "Scotland": "Edinburgh; Glasgow; Aberdeen",
    "Ireland": "Dublin; Cork",
    "Sweden": "Stockholm; Gothenburg",
    "Norway": "Oslo; Bergen",
}

_LANDMARK_COUNTRY = {
    "France": "the Eiffel Tower; the Louvre; Notre-Dame de Paris; the Arc de Triomphe; the Palace of Versailles; "
    "Mont Saint-Michel",
    "Italy": "the Colosseum; the Leaning Tower of Pisa; the Trevi Fountain; the Pantheon in Rome; St. Mark's Basilica",
    "England": "Big Ben; Buckingham Palace; Tower Bridge; Stonehenge; Westminster Abbey; the London Eye",
    "India": "the Taj Mahal; the Red Fort; the Gateway of India",
    "Germany": "the Brandenburg Gate; Neuschwanstein Castle; Cologne Cathedral",
    "Russia": "the Kremlin; Red Square; Saint Basil's Cathedral",
    "Spain": "the Sagrada Familia; the Alhambra; Park Güell",
    "Greece": "the Acropolis; the Parthenon",
    "China": "the Great Wall; the Forbidden City; Tiananmen Square",
    "Egypt": "the Great Pyramid of Giza; the Sphinx; the Valley of the Kings",
    "Australia": "the Sydney Opera House; the Great Barrier Reef; Uluru",
    "Japan": "Mount Fuji; the Tokyo Tower",
    "Peru": "Machu Picchu",
    "Canada": "the CN Tower; Niagara Falls",
    "Brazil": "Christ the Redeemer; the Amazon rainforest",
    "Cambodia": "Angkor Wat",
    "Jordan": "Petra",
}

_LANDMARK_CITY = {
    "Paris": "the Eiffel Tower; the Louvre; Notre-Dame de Paris; the Arc de Triomphe; the Champs-Élysées; "
    "the Musée d'Orsay; Montmartre",
    "Rome": "the Colosseum; the Trevi Fountain; the Pantheon; the Spanish Steps; the Roman Forum",
    "London": "Big Ben; Buckingham Palace; Tower Bridge; Westminster Abbey; the London Eye; Trafalgar Square; "
    "the British Museum",
    "New York": "the Statue of Liberty; the Empire State Building; Central Park; Times Square; Wall Street; "
    "the Brooklyn Bridge",
    "Berlin": "the Brandenburg Gate; the Reichstag; Checkpoint Charlie; the Berlin Wall Memorial",
    "Moscow": "the Kremlin; Red Square; Saint Basil's Cathedral; the Bolshoi Theatre",
    "Barcelona": "the Sagrada Familia; Park Güell; Camp Nou; La Rambla",
    "Athens": "the Acropolis; the Parthenon",
    "Beijing": "the Forbidden City; Tiananmen Square; the Temple of Heaven",
    "Sydney": "the Sydney Opera House; the Sydney Harbour Bridge; Bondi Beach",
    "San Francisco": "the Golden Gate Bridge; Alcatraz; Fisherman's Wharf",
    "Agra": "the Taj Mahal",
    "Seattle": "the Space Needle; Pike Place Market",
    "Los Angeles": "Hollywood; the Hollywood Walk of Fame; Venice Beach",
    "Venice": "St. Mark's Basilica; the Rialto Bridge; the Doge's Palace",
    "Tokyo": "the Tokyo Tower; Shibuya Crossing; the Imperial Palace",
    "Dubai": "the Burj Khalifa; the Palm Jumeirah",
    "Toronto": "the CN Tower",
    "Rio de Janeiro": "Christ the Redeemer; Copacabana Beach; Sugarloaf Mountain",
    "Chicago": "the Willis Tower; Millennium Park",
    "Washington": "the White House; the Lincoln Memorial; the Washington Monument; the Capitol",
    "Istanbul": "the Hagia Sophia; the Blue Mosque",
    "Amsterdam": "the Rijksmuseum; the Anne Frank House",
    "Madrid": "the Prado Museum; the Royal Palace of Madrid",
}

_CAPITALS = {
    "Paris": "France",
    "Berlin": "Germany",
    "Rome": "Italy",
    "Madrid": "Spain",
    "Tokyo": "Japan",
    "Ottawa": "Canada",
    "Canberra": "Australia",
    "Beijing": "China",
    "Moscow": "Russia",
    "London": "England; the United Kingdom",
    "Lisbon": "Portugal",
    "Athens": "Greece",
    "Vienna": "Austria",
    "Bern": "Switzerland",
    "Warsaw": "Poland",
    "Stockholm": "Sweden",
    "Oslo": "Norway",
    "Helsinki": "Finland",
    "Copenhagen": "Denmark",
    "Dublin": "Ireland",
    "Cairo": "Egypt",
    "Ankara": "Turkey",
    "Brasília": "Brazil",
    "Buenos Aires": "Argentina",
    "Mexico City": "Mexico",
    "New Delhi": "India",
    "Seoul": "South Korea",
    "Bangkok": "Thailand",
    "Hanoi": "Vietnam",
    "Jakarta": "Indonesia",
    "Manila": "the Philippines",
    "Nairobi": "Kenya",
    "Budapest": "Hungary",
    "Prague": "the Czech Republic",
    "Brussels": "Belgium",
    "Amsterdam": "the Netherlands",
    "Lima": "Peru",
    "Santiago": "Chile",
    "Bogotá": "Colombia",
    "Havana": "Cuba",
    "Tehran": "Iran",
    "Baghdad": "Iraq",
    "Kabul": "Afghanistan",
    "Islamabad": "Pakistan",
    "Riyadh": "Saudi Arabia",
    "Wellington": "New Zealand",
    "Edinburgh": "Scotland",
    "Kyiv": "Ukraine",
    "Bucharest": "Romania",
    "Caracas": "Venezuela",
    "Washington": "the United States",
}

_LANGUAGES = {
    "Spanish": "Spain; Mexico; Argentina; Colombia; Peru; Chile; Cuba; Venezuela; Bolivia; Ecuador; Uruguay",
    "French": "France; Belgium; Senegal; Haiti; Monaco; Ivory Coast; Cameroon",
    "English": "England; Australia; New Zealand; Ireland; Jamaica; the United States; Canada",
    "Portuguese": "Portugal; Brazil; Angola; Mozambique",
    "Arabic": "Egypt; Saudi Arabia; Iraq; Syria; Jordan; Morocco; Algeria; Libya; Yemen",
    "German": "Germany; Austria; Liechtenstein",
    "Italian": "Italy; San Marino",
    "Russian": "Russia; Belarus",
    "Japanese": "Japan",
    "Chinese": "China; Taiwan",
    "Korean": "South Korea; North Korea",
    "Dutch": "the Netherlands",
    "Greek": "Greece; Cyprus",
    "Turkish": "Turkey",
    "Swedish": "Sweden",
    "Polish": "Poland",
    "Persian": "Iran",
    "Hindi": "India",
    "Thai": "Thailand",
    "Vietnamese": "Vietnam",
}

_CURRENCIES = {
    "euro": "France; Germany; Italy; Spain; Portugal; Greece; Austria; Ireland; Finland; Belgium; the Netherlands",
    "dollar": "the United States; Canada; Australia; New Zealand; Singapore; Jamaica",
    "yen": "Japan",
    "pound": "the United Kingdom; England; Egypt",
    "peso": "Mexico; Argentina; Chile; Colombia; Cuba; the Philippines",
    "rupee": "India; Pakistan; Sri Lanka; Nepal",
    "franc": "Switzerland",
    "ruble": "Russia; Belarus",
    "yuan": "China",
    "won": "South Korea; North Korea",
    "krona": "Sweden",
    "real": "Brazil",
    "lira": "Turkey",
    "rand": "South Africa",
}

_CONTINENTS = {
    "Europe": "France; Germany; Italy; Spain; Portugal; Poland; Sweden; Norway; Greece; Austria; Hungary; "
    "Switzerland; Belgium; Denmark; Finland; Romania",
    "Asia": "China; Japan; India; Thailand; Vietnam; Mongolia; Nepal; Cambodia; Malaysia; Indonesia; Pakistan; "
    "South Korea; Laos; Bangladesh",
    "Africa": "Nigeria; Kenya; Egypt; Ethiopia; Ghana; Morocco; Senegal; Tanzania; Uganda; Algeria; Zimbabwe; "
    "Cameroon; Mali; Sudan",
    "South America": "Brazil; Argentina; Chile; Peru; Colombia; Venezuela; Bolivia; Uruguay; Paraguay; Ecuador",
    "North America": "Canada; Mexico; the United States; Guatemala; Honduras",
    "Antarctica": "the South Pole; the Vinson Massif; Mount Erebus",
    "Oceania": "Fiji; Samoa; Tonga",
}

_MANUFACTURERS = {
    "Apple": "the iPhone; the iPad; the MacBook; the Apple Watch; iTunes; the iPod; Safari",
    "Microsoft": "Windows; the Xbox; Microsoft Office; Bing; Internet Explorer; Outlook",
    "Google": "Android; Chrome; Gmail; YouTube; Google Maps; the Pixel",
    "Sony": "the PlayStation; the Walkman",
    "Samsung": "the Galaxy S; the Galaxy Note",
    "Toyota": "the Corolla; the Camry; the Prius; the Land Cruiser; the RAV4",
    "Ford": "the Mustang; the F-150; the Model T; the Fiesta; the Focus",
    "Honda": "the Civic; the Accord",
    "Nintendo": "the Game Boy; the Nintendo Switch; the Wii; Super Mario",
    "Boeing": "the Boeing 747; the Boeing 737; the 787 Dreamliner",
    "Amazon": "the Kindle; Alexa; the Echo",
    "Tesla": "the Model S; the Model 3; the Cybertruck",
    "Volkswagen": "the Beetle; the Golf; the Passat",
    "Chevrolet": "the Corvette; the Camaro; the Impala",
    "Porsche": "the Porsche 911; the Cayenne",
    "Nikon": "the Nikon D750",
    "Canon": "the EOS 5D",
    "Intel": "the Pentium; the Core i7",
}

_COMPANY_COUNTRY = {
    "Japan": "Toyota; Sony; Honda; Nintendo; Panasonic; Mitsubishi; Nissan; Toshiba; Canon; Yamaha; Suzuki; "
    "Mazda; Fujifilm",
    "Germany": "BMW; Volkswagen; Siemens; Adidas; Mercedes-Benz; Bosch; Audi; Porsche; Lufthansa; Puma; SAP; Bayer",
    "South Korea": "Samsung; Hyundai; LG; Kia",
    "Sweden": "IKEA; Volvo; Ericsson; Spotify; H&M; Saab",
    "Italy": "Ferrari; Fiat; Lamborghini; Gucci; Prada; Maserati; Ducati",
    "France": "Renault; Peugeot; Louis Vuitton; Chanel; L'Oréal; Michelin; Citroën",
    "Finland": "Nokia",
    "Switzerland": "Nestlé; Rolex; Novartis; Swatch",
    "China": "Huawei; Alibaba; Lenovo; Xiaomi; Tencent",
    "the United States": "Apple; Microsoft; Google; Amazon; Ford; Boeing; Coca-Cola; McDonald's",
    "England": "Rolls-Royce; Jaguar; BP",
    "the Netherlands": "Philips; Heineken; Shell",
}

_SPORTS = {
    "basketball": "Michael Jordan; LeBron James; Kobe Bryant; Stephen Curry; Shaquille O'Neal; Magic Johnson; "
    "Kevin Durant; Larry Bird; Dirk Nowitzki; Tim Duncan",
    "soccer": "Lionel Messi; Cristiano Ronaldo; Neymar; David Beckham; Pelé; Zinedine Zidane; Wayne Rooney; "
    "Diego Maradona; Kylian Mbappé; Ronaldinho; Thierry Henry",
    "tennis": "Roger Federer; Rafael Nadal; Serena Williams; Novak Djokovic; Andy Murray; Venus Williams; "
    "Pete Sampras; Andre Agassi; Maria Sharapova; Steffi Graf",
    "golf": "Tiger Woods; Phil Mickelson; Rory McIlroy; Jack Nicklaus; Arnold Palmer",
    "baseball": "Babe Ruth; Derek Jeter; Barry Bonds; Alex Rodriguez; Mickey Mantle; Shohei Ohtani",
    "hockey": "Wayne Gretzky; Sidney Crosby; Alexander Ovechkin; Mario Lemieux",
    "cricket": "Sachin Tendulkar; Virat Kohli; Brian Lara; Shane Warne",
    "football": "Tom Brady; Peyton Manning; Joe Montana; Aaron Rodgers; Patrick Mahomes",
    "boxing": "Muhammad Ali; Mike Tyson; Floyd Mayweather; Manny Pacquiao",
    "swimming": "Michael Phelps; Katie Ledecky; Ian Thorpe",
}

_INSTRUMENTS = {
    "guitar": "Jimi Hendrix; Eric Clapton; Jimmy Page; Slash; Eddie Van Halen; B.B. King; Keith Richards; "
    "Carlos Santana; Stevie Ray Vaughan",
    "trumpet": "Miles Davis; Louis Armstrong; Dizzy Gillespie; Chet Baker; Wynton Marsalis",
    "saxophone": "John Coltrane; Charlie Parker; Kenny G; Sonny Rollins; Stan Getz",
    "piano": "Elton John; Billy Joel; Lang Lang; Frédéric Chopin; Franz Liszt; Thelonious Monk; Herbie Hancock; "
    "Ray Charles; Glenn Gould",
    "drums": "Ringo Starr; Neil Peart; Travis Barker; John Bonham; Keith Moon; Buddy Rich",
    "cello": "Yo-Yo Ma; Pablo Casals; Jacqueline du Pré",
    "violin": "Itzhak Perlman; Joshua Bell; Niccolò Paganini; Jascha Heifetz",
    "bass": "Flea; Jaco Pastorius; Geddy Lee",
}

_OCCUPATIONS = {
    "physicist": "Albert Einstein; Isaac Newton; Stephen Hawking; Niels Bohr; Richard Feynman; Max Planck; "
    "Werner Heisenberg; Enrico Fermi",
    "painter": "Pablo Picasso; Vincent van Gogh; Claude Monet; Rembrandt; Salvador Dalí; Leonardo da Vinci; "
    "Henri Matisse; Frida Kahlo",
    "composer": "Wolfgang Amadeus Mozart; Ludwig van Beethoven; Johann Sebastian Bach; Richard Wagner; "
    "Pyotr Ilyich Tchaikovsky; Antonio Vivaldi; Joseph Haydn",
    "actor": "Tom Hanks; Brad Pitt; Leonardo DiCaprio; Morgan Freeman; Robert De Niro; Tom Cruise; Denzel Washington",
    "writer": "William Shakespeare; Charles Dickens; Mark Twain; Jane Austen; Ernest Hemingway; Leo Tolstoy",
    "philosopher": "Socrates; Plato; Aristotle; Immanuel Kant; Friedrich Nietzsche; René Descartes",
    "singer": "Beyoncé; Madonna; Whitney Houston; Adele; Taylor Swift; Frank Sinatra",
    "chemist": "Marie Curie; Dmitri Mendeleev; Antoine Lavoisier; Linus Pauling",
    "mathematician": "Carl Friedrich Gauss; Leonhard Euler; Pythagoras; Euclid",
    "politician": "Barack Obama; Winston Churchill; Abraham Lincoln; Angela Merkel",
}

_NATIVE_LANGUAGE = {
    "French": "Emmanuel Macron; Victor Hugo; Charles de Gaulle; Napoleon Bonaparte; Édith Piaf; Voltaire",
    "German": "Angela Merkel; Johann Wolfgang von Goethe; Friedrich Nietzsche; Otto von Bismarck; Immanuel Kant",
    "Russian": "Vladimir Putin; Leo Tolstoy; Fyodor Dostoevsky; Mikhail Gorbachev; Alexander Pushkin",
    "Italian": "Dante Alighieri; Galileo Galilei; Luciano Pavarotti; Silvio Berlusconi",
    "Spanish": "Miguel de Cervantes; Pablo Picasso; Gabriel García Márquez; Salvador Dalí",
    "English": "William Shakespeare; Charles Dickens; Winston Churchill; Abraham Lincoln; Jane Austen",
    "Japanese": "Hayao Miyazaki; Haruki Murakami; Akira Kurosawa",
    "Chinese": "Confucius; Mao Zedong; Xi Jinping",
    "Dutch": "Vincent van Gogh; Rembrandt; Anne Frank",
    "Portuguese": "Luís de Camões; Fernando Pessoa",
}


def _capital_pairs() -> tuple[tuple[str, str], ...]:
    return tuple((country.strip(), city) for city, countries in _CAPITALS.items() for country in countries.split(";"))


RELATIONS: dict[str, Relation] = {
    r.relation_id: r
    for r in (
        Relation(
            "P36",
            "capital",
            "The capital of {} is",
            ("The capital city of {} is", "{}'s capital city is"),
            ("{} is a country where", "People who travel to {} usually visit", "The history of {} is"),
            "The capital of {} is {}.",
            "city",
            _capital_pairs(),
        ),
        Relation(
            "P17",
            "country",
            "{} is located in the country of",
            ("{} can be found in the country of", "{} is a place in the country of"),
            ("The best thing about {} is", "When you visit {}, you", "{} is famous for"),
            "{} is located in {}.",
            "country",
            _pairs(_COUNTRY_CITIES) + _pairs(_LANDMARK_COUNTRY),
        ),
        Relation(
            "P131",
            "located in city",
            "{} is located in the city of",
            ("{} can be found in the city of", "To see {}, you have to travel to the city of"),
            ("When you visit {}, you", "The best way to see {} is", "{} is famous for"),
            "{} is in the city of {}.",
            "city",
            _pairs(_LANDMARK_CITY),
        ),
        Relation(
            "P37",
            "official language",
            "The official language of {} is",
            ("In {}, the official language is", "Most people in {} speak"),
            ("The people of {} are known for", "Life in {} is", "{} is a country where"),
            "People in {} speak {}.",
            "language",
            _pairs(_LANGUAGES),
        ),
        Relation(
            "P38",
            "currency",
            "The currency of {} is the",
            ("The official currency of {} is the", "In {}, people pay with the"),
            ("Shopping in {} is", "The economy of {} is", "{} is a country where"),
            "The currency of {} is the {}.",
            "currency",
            _pairs(_CURRENCIES),
        ),
        Relation(
            "P30",
            "continent",
            "{} is located in the continent of",
            ("{} is a country in the continent of", "{} is part of the continent of"),
            ("The geography of {} is", "Travelling through {} is", "{} is a country where"),
            "{} is in {}.",
            "continent",
            _pairs(_CONTINENTS),
        ),
        Relation(
            "P176",
            "manufacturer",
            "{} is produced by",
            ("{} is made by", "{} is a product of"),
            ("{} is popular because", "The design of {} is", "People who use {} say"),
            "{} is made by {}.",
            "company",
            _pairs(_MANUFACTURERS),
        ),
        Relation(
            "P495",
            "company country",
            "{} is a company from",
            ("{} is a company headquartered in", "The company {} was founded in"),
            ("{} is a company that", "The history of {} began", "Products made by {} are"),
            "{} is a company from {}.",
            "country",
            _pairs(_COMPANY_COUNTRY),
        ),
        Relation(
            "P641",
            "sport",
            "{} professionally plays the sport of",
            ("{} is a professional player of", "{} became famous playing"),
            ("{} is known for", "The career of {} began", "Fans of {} remember"),
            "{} plays {}.",
            "sport",
            _pairs(_SPORTS),
        ),
        Relation(
            "P1303",
            "instrument",
            "{} is known for playing the",
            ("{} played the", "The instrument played by {} is the"),
            ("{} is known for", "The music of {} is", "Fans of {} remember"),
            "{} plays the {}.",
            "instrument",
            _pairs(_INSTRUMENTS),
        ),
        Relation(
            "P106",
            "occupation",
            "By profession, {} was a",
            ("{} worked as a", "{} is best known as a"),
            ("{} is known for", "The life of {} was", "People remember {} because"),
            "{} was a {}.",
            "occupation",
            _pairs(_OCCUPATIONS),
        ),
        Relation(
            "P103",
            "native language",
            "The mother tongue of {} is",
            ("The native language of {} is", "{} grew up speaking"),
            ("{} is known for", "The life of {} was", "People remember {} because"),
            "{} speaks {}.",
            "language",
            _pairs(_NATIVE_LANGUAGE),
        ),
    )
}

#: One sentence about some objects, added to the reference text (the stand-in for Wikipedia snippets).
OBJECT_NOTES: dict[str, str] = {
    "basketball": "Basketball is played by two teams of five who shoot a ball through a hoop; the NBA is its league.",
    "soccer": "Soccer is played with a round ball kicked into a goal; the World Cup is its biggest tournament.",
    "football": "American football is played with an oval ball; teams score touchdowns; the NFL plays the Super Bowl.",
    "tennis": "Tennis is played with a racket on a court; Wimbledon is its oldest tournament.",
    "golf": "Golf is played on a course of eighteen holes with clubs; the Masters is a major championship.",
    "baseball": "Baseball is played with a bat and ball; pitchers throw, batters hit home runs.",
    "hockey": "Ice hockey is played on ice with sticks and a puck; the NHL is its league.",
    "cricket": "Cricket is played with a bat and ball; a batsman scores runs, a bowler takes wickets.",
    "boxing": "Boxing is a combat sport in the ring; boxers fight with gloves over rounds.",
    "swimming": "Swimming races are held in a pool in freestyle, butterfly, backstroke and breaststroke.",
    "guitar": "The guitar is a string instrument with six strings, played in rock, blues and jazz.",
    "piano": "The piano is a keyboard instrument with eighty-eight keys, used in classical music and jazz.",
    "trumpet": "The trumpet is a brass instrument with three valves, loud and bright, central to jazz.",
    "saxophone": "The saxophone is a woodwind instrument made of brass, used in jazz.",
    "drums": "The drums are percussion instruments played with sticks; the drummer keeps the beat of a band.",
    "violin": "The violin is a string instrument played with a bow, the highest of the string family.",
    "cello": "The cello is a large string instrument played with a bow while seated.",
    "bass": "The bass guitar holds the low notes of a band together with the drums.",
    "physicist": "A physicist studies matter, energy, motion, light and the laws of the universe.",
    "painter": "A painter makes pictures with paint and brushes on canvas; paintings hang in museums.",
    "composer": "A composer writes music: symphonies, operas, concertos and sonatas.",
    "actor": "An actor performs roles in films, plays and television; actors win awards like the Oscar.",
    "writer": "A writer writes novels, plays, stories and poems that readers study and enjoy.",
    "philosopher": "A philosopher asks questions about knowledge, ethics, truth and the mind.",
    "singer": "A singer performs songs, records albums and tours with concerts.",
    "chemist": "A chemist studies elements, compounds and chemical reactions in a laboratory.",
    "mathematician": "A mathematician proves theorems about numbers, geometry and algebra.",
    "politician": "A politician is elected to office, makes laws and leads a government or party.",
    "euro": "The euro is the currency of the eurozone, issued by the European Central Bank.",
    "dollar": "The dollar is divided into one hundred cents.",
    "yen": "The yen is the currency of Japan, issued by the Bank of Japan.",
    "pound": "The pound sterling is one of the oldest currencies in use.",
    "peso": "The peso is the name of the currency of several countries of Latin America.",
    "rupee": "The rupee is the currency of India and of several countries of South Asia.",
}
